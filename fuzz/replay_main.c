/*
 * fuzz/replay_main.c: runs a libFuzzer harness over files, without libFuzzer.
 *
 * `make check` links each fuzz_*.c with this main() and the project's own
 * compiler, so the corpora become regression inputs that also run under
 * Valgrind and the gcc/clang sanitizers.  Arguments are files or directories;
 * directories are walked recursively in sorted order so that a failure always
 * shows up on the same input.  Entries whose name starts with '.' are skipped.
 *
 * Each input is read into a heap block of exactly its size, as libFuzzer does,
 * so that a read past the end is caught by ASan or Valgrind.
 *
 * Exit status: 0 when every input ran; 2 when a path cannot be read or a
 * directory holds no input at all (an empty corpus would pass silently).  A
 * harness that finds a bug aborts, which fails the run by itself.
 *
 * `-v` as the first argument names each input on stderr before running it,
 * to find the one that crashed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long replayed;
static int verbose;

static int replay_path(const char *path);

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    for (;;) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                fprintf(stderr, "replay: out of memory reading %s\n", path);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    /* An exact-size copy: any read past `len` is then out of bounds. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    if (len)
        memcpy(exact, buf, len);
    free(buf);
    if (verbose)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    (void)LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    replayed++;
    return 0;
}

static int replay_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: cannot open directory %s: %s\n", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
            cap = ncap;
        }
        size_t plen = strlen(path) + 1 + strlen(e->d_name) + 1;
        names[n] = malloc(plen);
        if (!names[n]) {
            rc = -1;
            break;
        }
        snprintf(names[n], plen, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    if (rc != 0)
        fprintf(stderr, "replay: out of memory listing %s\n", path);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    unsigned long before = replayed;
    for (size_t i = 0; i < n; i++)
        if (replay_path(names[i]) != 0)
            rc = -1;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (replayed == before) {
        fprintf(stderr, "replay: no input in %s\n", path);
        rc = -1;
    }
    return rc;
}

static int replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: cannot stat %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode))
        return replay_dir(path);
    return replay_file(path);
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        verbose = 1;
        first = 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [-v] FILE|DIR...\n", argv[0]);
        return 2;
    }
    int rc = 0;
    for (int i = first; i < argc; i++)
        if (replay_path(argv[i]) != 0)
            rc = 2;
    printf("replayed %lu inputs\n", replayed);
    return rc;
}
