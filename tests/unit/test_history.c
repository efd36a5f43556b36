/* test_history.c - admitting live messages and judging history reads. */
#include "core/history.h"
#include "check.h"

static struct position at(const char *epoch, uint64_t offset)
{
    struct position p = {.offset = offset};
    snprintf(p.epoch, sizeof p.epoch, "%s", epoch);
    return p;
}

static void test_admit(void)
{
    struct position last = at("e1", 41);
    struct position next = at("e1", 42), dup = at("e1", 41), old = at("e1", 3),
                    jump = at("e1", 44), other = at("e2", 42);
    CHECK_EQ_INT(history_admit(&last, &next), HISTORY_NEXT);
    CHECK_EQ_INT(history_admit(&last, &dup), HISTORY_DUPLICATE);
    CHECK_EQ_INT(history_admit(&last, &old), HISTORY_DUPLICATE);
    CHECK_EQ_INT(history_admit(&last, &jump), HISTORY_GAP);
    CHECK_EQ_INT(history_admit(&last, &other), HISTORY_GAP);
}

static void test_gap(void)
{
    struct history_entry e[3] = {{42, "1", 1}, {43, "2", 1}, {44, "3", 1}};
    struct position from = at("e1", 41);
    struct history_read all = {at("e1", 44), e, 3};
    CHECK_EQ_INT(history_gap(&from, &all), HISTORY_COMPLETE);
    struct history_read upto = {at("e1", 41), NULL, 0};
    CHECK_EQ_INT(history_gap(&from, &upto), HISTORY_COMPLETE); /* nothing missed */
    struct history_read other = {at("e2", 44), e, 3};
    CHECK_EQ_INT(history_gap(&from, &other), HISTORY_EPOCH);
    struct history_read behind = {at("e1", 40), NULL, 0};
    CHECK_EQ_INT(history_gap(&from, &behind), HISTORY_FUTURE);
    struct history_read none = {at("e1", 44), NULL, 0};
    CHECK_EQ_INT(history_gap(&from, &none), HISTORY_EXPIRED);
    struct history_read trimmed = {at("e1", 44), e + 1, 2};
    CHECK_EQ_INT(history_gap(&from, &trimmed), HISTORY_TRIMMED);
    struct history_read cut = {at("e1", 44), e, 2};
    CHECK_EQ_INT(history_gap(&from, &cut), HISTORY_TOO_MANY);
    /* a read shared with a subscriber further behind starts before from */
    struct position mid = at("e1", 42);
    CHECK_EQ_INT(history_gap(&mid, &all), HISTORY_COMPLETE);
    struct history_read hole = {at("e1", 44), (struct history_entry[]){{41, "0", 1}, {44, "3", 1}}, 2};
    CHECK_EQ_INT(history_gap(&mid, &hole), HISTORY_TRIMMED);
    struct history_read short_ = {at("e1", 44), e, 1};
    CHECK_EQ_INT(history_gap(&mid, &short_), HISTORY_TOO_MANY);
    CHECK_STR(history_loss_name(HISTORY_TRIMMED), "trimmed");
    CHECK_STR(history_loss_name(HISTORY_LOSS_COUNT), "unknown");
}

static void test_epoch_new(void)
{
    char a[HISTORY_EPOCH_LEN + 1], b[HISTORY_EPOCH_LEN + 1];
    history_epoch_new(a);
    history_epoch_new(b);
    CHECK(position_epoch_valid(a, strlen(a)));
    CHECK_EQ_INT((int)strlen(a), HISTORY_EPOCH_LEN);
    CHECK(strcmp(a, b) != 0);
}

int main(void)
{
    RUN(test_admit);
    RUN(test_gap);
    RUN(test_epoch_new);
    return check_summary();
}
