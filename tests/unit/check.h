/* check.h - a tiny assertion kit for the unit tests; no framework.
 *
 * Every CHECK_* evaluates each argument once, records a pass or a failure
 * and carries on: a failure prints
 * "file:line: [test] what failed" on stderr. RUN(fn) runs one test function
 * and names it in failure lines. check_summary() prints exactly one closing
 * line, "N passed, N failed", and returns the exit status for main (nonzero
 * when anything failed):
 *
 *     int main(void) { RUN(test_a); RUN(test_b); return check_summary(); }
 *
 * The *_AT forms take an explicit file and line, for helpers that check on
 * behalf of their caller (pass __LINE__ down). Single-TU header: each test
 * program includes it once. */
#ifndef WSGATE_TEST_CHECK_H
#define WSGATE_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static unsigned long check_passed_n, check_failed_n;
static const char *check_test_name = "";

__attribute__((unused, format(printf, 4, 5)))
static int check_record(int ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        check_passed_n++;
        return 1;
    }
    check_failed_n++;
    fprintf(stderr, "%s:%d: [%s] ", file, line, check_test_name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

/* Bytes made printable for a failure line: C escapes for control bytes
 * and bytes >= 0x7f. Returns one of four rotating static
 * buffers (long input is cut with "..."). */
__attribute__((unused))
static const char *check_show(const void *p, size_t len)
{
    static char bufs[4][1024];
    static unsigned k;
    char *out = bufs[k++ & 3];
    const unsigned char *s = p;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (n + 8 >= sizeof bufs[0]) {
            memcpy(out + n, "...", 4);
            return out;
        }
        unsigned char c = s[i];
        if (c == '\n')
            n += (size_t)sprintf(out + n, "\\n");
        else if (c == '\t')
            n += (size_t)sprintf(out + n, "\\t");
        else if (c < 0x20 || c >= 0x7f)
            n += (size_t)sprintf(out + n, "\\x%02x", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return out;
}

__attribute__((unused))
static int check_int_at(const char *file, int line, const char *ea,
                        const char *eb, long long a, long long b)
{
    return check_record(a == b, file, line, "%s == %s failed: %lld != %lld",
                        ea, eb, a, b);
}

__attribute__((unused))
static int check_uint_at(const char *file, int line, const char *ea,
                         const char *eb, unsigned long long a,
                         unsigned long long b)
{
    return check_record(a == b, file, line, "%s == %s failed: %llu != %llu",
                        ea, eb, a, b);
}

/* Either may be NULL; two NULLs are equal. */
__attribute__((unused))
static int check_str_at(const char *file, int line, const char *ea,
                        const char *eb, const char *a, const char *b)
{
    int ok = (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
    return check_record(ok, file, line, "%s == %s failed: \"%s\" != \"%s\"",
                        ea, eb, a ? a : "(null)", b ? b : "(null)");
}

/* Compares a bytes with the NUL-terminated b (length and content). */
__attribute__((unused))
static int check_mem_at(const char *file, int line, const char *ea,
                        const char *eb, const void *a, size_t alen,
                        const char *b)
{
    size_t blen = strlen(b);
    int ok = alen == blen && memcmp(a, b, blen) == 0;
    return check_record(ok, file, line,
                        "%s == %s failed:\n    got      \"%s\" (%zu bytes)\n"
                        "    expected \"%s\" (%zu bytes)",
                        ea, eb, check_show(a, alen), alen, check_show(b, blen), blen);
}

__attribute__((unused))
static int check_contains_at(const char *file, int line, const char *ea,
                             const char *hay, const char *needle)
{
    int ok = hay && strstr(hay, needle) != NULL;
    return check_record(ok, file, line, "%s (\"%s\") does not contain \"%s\"",
                        ea, hay ? hay : "(null)", needle);
}

__attribute__((unused))
static int check_ptr_at(const char *file, int line, const char *ea,
                        const char *eb, const void *a, const void *b)
{
    return check_record(a == b, file, line, "%s == %s failed: %p != %p",
                        ea, eb, a, b);
}

#define CHECK_AT(file, line, cond) \
    check_record(!!(cond), file, line, "CHECK(%s) failed", #cond)
#define CHECK(cond) CHECK_AT(__FILE__, __LINE__, cond)
/* CHECK with a printf-style explanation. */
#define CHECK_MSG(cond, ...) check_record(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_EQ_INT(a, b) \
    check_int_at(__FILE__, __LINE__, #a, #b, (long long)(a), (long long)(b))
#define CHECK_EQ_UINT(a, b)                                       \
    check_uint_at(__FILE__, __LINE__, #a, #b,                     \
                  (unsigned long long)(a), (unsigned long long)(b))
#define CHECK_STR(a, b) check_str_at(__FILE__, __LINE__, #a, #b, (a), (b))
#define CHECK_MEM(a, alen, b) \
    check_mem_at(__FILE__, __LINE__, #a, #b, (a), (size_t)(alen), (b))
#define CHECK_CONTAINS(hay, needle) \
    check_contains_at(__FILE__, __LINE__, #hay, (hay), (needle))
#define CHECK_PTR_EQ(a, b) \
    check_ptr_at(__FILE__, __LINE__, #a, #b, (const void *)(a), (const void *)(b))
#define CHECK_NULL(p) CHECK_AT(__FILE__, __LINE__, (p) == NULL)
#define CHECK_NOT_NULL(p) CHECK_AT(__FILE__, __LINE__, (p) != NULL)

#define RUN(fn)                    \
    do {                           \
        check_test_name = #fn;     \
        fn();                      \
        check_test_name = "";      \
    } while (0)

__attribute__((unused))
static int check_summary(void)
{
    printf("%lu passed, %lu failed\n", check_passed_n, check_failed_n);
    fflush(stdout);
    return check_failed_n ? 1 : 0;
}

#endif
