/*
 * util: allocation that aborts on failure, a growable byte buffer for
 * building text, and the reference-counted outgoing frame shared by every
 * receiver of one relay.
 *
 * Does not know about sockets or JSON. Ownership: mh_buf_t is embedded by
 * its user (init/free); an mh_frame_t is freed when its last reference is
 * dropped with mh_frame_unref().
 */
#ifndef MSGHUB_UTIL_H
#define MSGHUB_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Error codes returned as negative ints by fallible functions. */
enum {
    MH_OK = 0,
    MH_EINVAL = -1,   /* bad argument or input */
    MH_ENOMEM = -2,   /* a limit would be exceeded */
    MH_ENOENT = -3,   /* no such item */
    MH_EEXPIRED = -4, /* token expired */
    MH_EBADSIG = -5,  /* token signature does not match */
    MH_EIO = -6,      /* I/O failed */
    MH_EDEPTH = -7,   /* nested deeper than allowed (JSON) */
    MH_EINDOUBT = -8, /* sent, but the answer was lost: it may have been applied */
};

/* Human-readable text for an MH_E* code; never NULL. */
const char *mh_strerror(int err);

/* Allocation: abort the process with a message when memory runs out. */
void *mh_xmalloc(size_t n);
void *mh_xcalloc(size_t n, size_t size);
void *mh_xrealloc(void *p, size_t n);
/* Room for element n of array p of *cap elements of size bytes: p as it is when
 * n < *cap, else p reallocated with *cap doubled (first when it was 0). */
void *mh_xgrow(void *p, size_t n, size_t *cap, size_t size, size_t first);
char *mh_xstrdup(const char *s);
/* New string a followed by b (caller frees). */
char *mh_xstrcat(const char *a, const char *b);

/* Value of a hexadecimal digit, or -1. */
int mh_hexval(int ch);

/* Wall clock in Unix milliseconds, and a monotonic clock in microseconds. */
uint64_t mh_now_ms(void);
uint64_t mh_mono_us(void);

/* Growable byte buffer, always NUL-terminated after mh_buf_* writes. */
typedef struct mh_buf {
    char *data;
    size_t len;
    size_t cap;
} mh_buf_t;

void mh_buf_init(mh_buf_t *b);
void mh_buf_free(mh_buf_t *b);
void mh_buf_reset(mh_buf_t *b);
void mh_buf_reserve(mh_buf_t *b, size_t extra);
void mh_buf_append(mh_buf_t *b, const void *p, size_t n);
void mh_buf_puts(mh_buf_t *b, const char *s);
void mh_buf_printf(mh_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mh_buf_u64(mh_buf_t *b, uint64_t v);
/* Appends s as a JSON string literal (quotes and escapes included). */
void mh_buf_json_string(mh_buf_t *b, const char *s, size_t n);

/*
 * Headroom in front of every frame's payload, for the WebSocket header the
 * transport writes in place (libwebsockets' LWS_PRE; ws.c checks at compile
 * time that it fits).
 */
#define MH_FRAME_HEADROOM 16

/*
 * A finished outgoing text frame. Built once, shared by reference by every
 * outbound queue and log that holds it; immutable after construction. A
 * message frame's text has no seq: each receiver's wire text is composed at
 * write time (codec.h, mh_codec_message_seq_into).
 */
typedef struct mh_frame {
    uint32_t refs;
    uint32_t local_left; /* local live writes still pending, for the relay latency */
    uint64_t t0_us;      /* mh_mono_us() at receipt of the relay, 0 if none */
    size_t len;          /* payload length, excluding headroom */
    int is_message;      /* a relayed message (its text has no seq, see seq_at), not a reply */
    /* message frames (contract v2): offset in the text where `,"seq":N` is
     * inserted for each receiver (see msglog.h); 0 for frames without seq */
    uint32_t seq_at;
    uint32_t log_refs;   /* entries of the memory log holding it (its bytes count once) */
    unsigned char mem[]; /* MH_FRAME_HEADROOM + len + 1 (NUL) bytes */
} mh_frame_t;

/* New frame with refs = 1 holding a copy of p[0..n). */
mh_frame_t *mh_frame_new(const void *p, size_t n);
/* New frame with refs = 1 made of b's memory, no copy (b is left empty, reusable). */
mh_frame_t *mh_frame_from_buf(mh_buf_t *b);
static inline unsigned char *mh_frame_data(mh_frame_t *f)
{
    return f->mem + MH_FRAME_HEADROOM;
}
mh_frame_t *mh_frame_ref(mh_frame_t *f);
/* Drops one reference; frees the frame when it was the last. NULL is a no-op. */
void mh_frame_unref(mh_frame_t *f);

/*
 * A weak handle to an object that may go away while asynchronous operations
 * still refer to it (a session, an HTTP request). The owner creates it and
 * calls mh_handle_clear() when the object dies; each pending operation holds
 * a reference and checks mh_handle_get() for NULL when it completes.
 */
typedef struct mh_handle {
    void *obj;
    uint32_t refs;
} mh_handle_t;

/* New handle naming obj, with the owner's reference. */
mh_handle_t *mh_handle_new(void *obj);
mh_handle_t *mh_handle_ref(mh_handle_t *h);
void mh_handle_unref(mh_handle_t *h);
/* The owner's object is gone: forget it and drop the owner's reference. */
void mh_handle_clear(mh_handle_t *h);
static inline void *mh_handle_get(const mh_handle_t *h)
{
    return h->obj;
}

#endif
