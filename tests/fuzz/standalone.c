/* standalone.c - replays inputs through a libFuzzer entry point, without
 * libFuzzer: builds with any compiler, so the corpus runs under ctest (and
 * ASan/UBSan) wherever clang is missing.
 *
 *     fuzz_auth_replay FILE|DIR...
 *
 * Each regular file (a directory's files, not recursing) is one input. It
 * also feeds the empty input. Prints "N inputs" and exits 0; a crash or an
 * abort() in the target is the failure. Exits 1 when a path cannot be read. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0, n;
    uint8_t *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: read failed\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so ASan sees reads past the input. */
    uint8_t *input = malloc(len ? len : 1);
    if (!input) {
        free(buf);
        return -1;
    }
    memcpy(input, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(input, len);
    free(input);
    return 0;
}

static int run_path(const char *path, unsigned long *count)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char file[4096];
        struct stat fst;
        if (e->d_name[0] == '.')
            continue;
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (stat(file, &fst) < 0 || !S_ISREG(fst.st_mode))
            continue;
        (*count)++;
        if (run_file(file) < 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    static const uint8_t empty[1];
    unsigned long count = 1;
    int rc = 0;
    LLVMFuzzerTestOneInput(empty, 0);
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) < 0)
            rc = 1;
    printf("%lu inputs\n", count);
    return rc;
}
