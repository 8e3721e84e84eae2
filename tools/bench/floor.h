/* msghub-bench floor: one frame per send() over loopback sockets, no hub
 * (see floor.c). Also used by --self-test. */
#ifndef MSGHUB_BENCH_FLOOR_H
#define MSGHUB_BENCH_FLOOR_H

#include <stdint.h>
#include <stdio.h>

typedef struct floor_opts {
    int connections;
    int frame_bytes; /* on the wire, WebSocket header included */
    double duration, warmup;
    const char *label;
} floor_opts_t;

typedef struct floor_result {
    uint64_t frames_window; /* whole frames sent inside the window */
    uint64_t sends, eagain, bytes_sent, bytes_read;
    double window_s, writer_cpu_s, reader_cpu_s;
    int ok; /* the reader read every byte sent, and exited cleanly */
} floor_result_t;

/* Runs the floor once (forks the reader); returns 0 when res->ok. */
int floor_run(const floor_opts_t *o, floor_result_t *res);
/* One JSON line. */
void floor_report(FILE *f, const floor_opts_t *o, const floor_result_t *res);
/* `msghub-bench floor ...`: argv[1] is "floor". Returns the exit status. */
int floor_main(int argc, char **argv);

#endif
