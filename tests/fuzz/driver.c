/*
 * driver: runs the fuzz target without libFuzzer (gcc builds, ctest): every
 * file of the seed corpus, then a fixed number of deterministic mutations
 * of them (byte flips, insertions, deletions, splices, truncations). A crash
 * or a failed invariant aborts the test. Usage: driver CORPUS_DIR [ROUNDS]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEDS 4096
#define MAX_LEN 8192

typedef struct seed {
    uint8_t *p;
    size_t n;
} seed_t;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t load(const char *dir, seed_t *seeds)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        exit(2);
    }
    size_t n = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) && n < MAX_SEEDS) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        seeds[n].p = malloc(MAX_LEN);
        seeds[n].n = fread(seeds[n].p, 1, MAX_LEN, f);
        fclose(f);
        n++;
    }
    closedir(d);
    return n;
}

/* One mutation of a into out (capacity MAX_LEN); returns the new length. */
static size_t mutate(const seed_t *a, const seed_t *b, uint8_t *out)
{
    static const char tokens[] = "{}[]\":,\\0123456789-.eE tfnu\x80\xc0\xed\xff";
    size_t n = a->n;
    memcpy(out, a->p, n);
    int edits = 1 + (int)(next() % 4);
    for (int k = 0; k < edits; k++) {
        size_t at = n ? next() % (n + 1) : 0;
        switch (next() % 5) {
        case 0: /* replace a byte */
            if (at < n)
                out[at] = (uint8_t)tokens[next() % (sizeof(tokens) - 1)];
            break;
        case 1: /* insert a byte */
            if (n < MAX_LEN) {
                memmove(out + at + 1, out + at, n - at);
                out[at] = (uint8_t)tokens[next() % (sizeof(tokens) - 1)];
                n++;
            }
            break;
        case 2: /* delete a byte */
            if (at < n) {
                memmove(out + at, out + at + 1, n - at - 1);
                n--;
            }
            break;
        case 3: /* truncate */
            n = at;
            break;
        default: { /* splice the tail of b */
            size_t from = b->n ? next() % b->n : 0, take = b->n - from;
            if (at + take > MAX_LEN)
                take = MAX_LEN - at;
            memcpy(out + at, b->p + from, take);
            n = at + take;
        }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [ROUNDS]\n", argv[0]);
        return 2;
    }
    long rounds = argc > 2 ? atol(argv[2]) : 200000;
    static seed_t seeds[MAX_SEEDS];
    size_t n = load(argv[1], seeds);
    if (!n) {
        fprintf(stderr, "empty corpus %s\n", argv[1]);
        return 2;
    }
    for (size_t i = 0; i < n; i++)
        LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n);
    uint8_t *buf = malloc(MAX_LEN);
    for (long r = 0; r < rounds; r++) {
        size_t len = mutate(&seeds[next() % n], &seeds[next() % n], buf);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz replay: %zu seeds, %ld mutations, no failure\n", n, rounds);
    for (size_t i = 0; i < n; i++)
        free(seeds[i].p);
    free(buf);
    return 0;
}
