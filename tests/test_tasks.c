/* Built-in text tasks: determinism, disjoint splits, correct answers, matching, prompt sizes. */
#include <check.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/status.h"
#include "datasets/tasks.h"
#include "tests/testutil.h"

/* An assertion without Check's bookkeeping, for loops over thousands of examples. */
#define REQUIRE(cond, ...)                                                                                             \
    do {                                                                                                               \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                                        \
    } while (0)

enum { N_CHECK = 3000, CAP = 512 };

typedef struct {
    char prompt[CAP], answer[CAP];
} Ex;

static Ex get_ex(TaskKind k, uint64_t seed, Split split, int64_t id) {
    Ex e;
    PeftcStatus st = task_example(k, seed, split, id, e.prompt, CAP, e.answer, CAP);
    REQUIRE(st == PEFTC_OK, "task %s id %lld: %s", task_names[k], (long long)id, peftc_err_msg());
    return e;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The n prompts of a split, sorted; caller frees the block. */
static char **sorted_prompts(TaskKind k, Split split, int n, char **block) {
    *block = malloc((size_t)n * CAP);
    char **p = malloc((size_t)n * sizeof *p);
    for (int i = 0; i < n; i++) {
        Ex e = get_ex(k, 3, split, i);
        p[i] = *block + (size_t)i * CAP;
        memcpy(p[i], e.prompt, CAP);
    }
    qsort(p, (size_t)n, sizeof *p, cmp_str);
    return p;
}

static int distinct(char **sorted, int n) {
    int d = n > 0;
    for (int i = 1; i < n; i++) d += strcmp(sorted[i], sorted[i - 1]) != 0;
    return d;
}

START_TEST(same_id_same_text) {
    for (int k = 0; k < TASK_COUNT; k++)
        for (int split = 0; split < 2; split++)
            for (int64_t id = 0; id < 200; id++) {
                Ex a = get_ex(k, 11, split, id), b = get_ex(k, 11, split, id);
                REQUIRE(strcmp(a.prompt, b.prompt) == 0 && strcmp(a.answer, b.answer) == 0, "%s id %lld differs",
                        task_names[k], (long long)id);
            }
    /* Another seed gives other problems. */
    int same = 0;
    for (int64_t id = 0; id < 100; id++)
        same += strcmp(get_ex(TASK_ARITH, 1, 0, id).prompt, get_ex(TASK_ARITH, 2, 0, id).prompt) == 0;
    ck_assert_int_lt(same, 5);
}
END_TEST

/* Pins the generators: a change in them must be deliberate (and invalidates tokenized caches). */
START_TEST(known_examples) {
    Ex a = get_ex(TASK_ARITH, 7, SPLIT_TRAIN, 0);
    ck_assert_str_eq(a.prompt, "Mia had 25 stamps. After Ravi gave her some more, she has 42. "
                               "How many stamps did Ravi give her?");
    ck_assert_str_eq(a.answer, "17");
    Ex r = get_ex(TASK_RECORDS, 7, SPLIT_TRAIN, 0);
    ck_assert_str_eq(r.prompt, "city: Vienna | job: farmer | name: Hana Costa | age: 63");
    ck_assert_str_eq(r.answer, "Hana Costa is a 63-year-old farmer from Vienna.");
    Ex s = get_ex(TASK_SQL, 7, SPLIT_EVAL, 1);
    ck_assert_str_eq(s.prompt, "How many employees work in Logistics?");
    ck_assert_str_eq(s.answer, "SELECT COUNT(*) FROM employees WHERE dept = 'Logistics';");
}
END_TEST

START_TEST(splits_are_disjoint) {
    for (int k = 0; k < TASK_COUNT; k++) {
        char *bt, *be;
        char **tr = sorted_prompts(k, SPLIT_TRAIN, N_CHECK, &bt);
        char **ev = sorted_prompts(k, SPLIT_EVAL, N_CHECK, &be);
        for (int i = 0; i < N_CHECK; i++)
            REQUIRE(!bsearch(&tr[i], ev, N_CHECK, sizeof *ev, cmp_str), "%s: \"%s\" is in both splits", task_names[k],
                    tr[i]);
        /* Enough variety that the eval split tests generalisation, not memory (sql has the fewest: a
         * one-slot template has ~24 problems, a fifth of them held out). */
        int dt = distinct(tr, N_CHECK), de = distinct(ev, N_CHECK);
        REQUIRE(dt > N_CHECK / 5 && de > N_CHECK / 5, "%s: only %d / %d distinct prompts", task_names[k], dt, de);
        free(tr);
        free(ev);
        free(bt);
        free(be);
    }
}
END_TEST

/* The integers of s in order; returns how many. */
static int numbers(const char *s, long *out, int max) {
    int n = 0;
    while (*s && n < max) {
        if (isdigit((unsigned char)*s)) {
            char *end;
            out[n++] = strtol(s, &end, 10);
            s = end;
        } else {
            s++;
        }
    }
    return n;
}

/* Recomputes an arith answer from the problem's wording and numbers; -1 if no template matches. */
static long solve(const char *p, int *template_id) {
    long x[4] = {0};
    int n = numbers(p, x, 4);
    struct {
        const char *a, *b;
        int nums;
        long value;
    } rules[] = {
        {"and then finds", "gives", 3, x[0] - x[1] + x[2]},
        {" more ", "together", 2, 2 * x[0] + x[1]},
        {"fewer", "", 2, x[0] - x[1]},
        {"Each", "buy?", 2, x[0] * x[1]},
        {"in each", "left?", 3, x[0] * x[1] - x[2]},
        {"After", "some more", 2, x[1] - x[0]},
        {"equally among", "", 2, x[1] ? x[0] / x[1] : -1},
        {"earns", "spends", 3, x[0] + x[1] - x[2]},
        {"together", "", 2, x[0] + x[1]},
        {"gives", "", 2, x[0] - x[1]},
    };
    for (int i = 0; i < (int)(sizeof rules / sizeof *rules); i++)
        if (strstr(p, rules[i].a) && strstr(p, rules[i].b)) {
            *template_id = i;
            return n == rules[i].nums ? rules[i].value : -1;
        }
    return -1;
}

START_TEST(arith_answers_are_right) {
    int seen[10] = {0};
    for (int split = 0; split < 2; split++)
        for (int64_t id = 0; id < N_CHECK; id++) {
            Ex e = get_ex(TASK_ARITH, 5, split, id);
            int t = -1;
            long want = solve(e.prompt, &t);
            REQUIRE(want >= 0, "no rule solves \"%s\"", e.prompt);
            char buf[32];
            snprintf(buf, sizeof buf, "%ld", want);
            REQUIRE(strcmp(buf, e.answer) == 0, "\"%s\": answer %s, expected %s", e.prompt, e.answer, buf);
            seen[t]++;
        }
    for (int t = 0; t < 10; t++) ck_assert_int_gt(seen[t], 100); /* every template is in use */
}
END_TEST

/* Splits "k: v | k: v" into keys and values (in place). */
static int fields(char *rec, char **keys, char **vals, int max) {
    int n = 0;
    for (char *part = strtok(rec, "|"); part && n < max; part = strtok(NULL, "|")) {
        while (*part == ' ') part++;
        char *colon = strstr(part, ": ");
        REQUIRE(colon, "field \"%s\" has no \": \"", part);
        *colon = '\0';
        char *v = colon + 2, *e = v + strlen(v);
        while (e > v && e[-1] == ' ') *--e = '\0';
        keys[n] = part;
        vals[n++] = v;
    }
    return n;
}

static const char *field(char **keys, char **vals, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0) return vals[i];
    return NULL;
}

/* The sentence rebuilt from the record's fields by the documented templates; returns the field set. */
static int expected_sentence(char *rec, char *out, size_t cap) {
    char *k[8], *v[8];
    int n = fields(rec, k, v, 8);
#define F(key) field(k, v, n, key)
    if (n == 4 && F("name") && F("age") && F("job") && F("city")) {
        snprintf(out, cap, "%s is a %s-year-old %s from %s.", F("name"), F("age"), F("job"), F("city"));
        return 0;
    }
    if (n == 4 && F("product") && F("brand") && F("color") && F("price")) {
        snprintf(out, cap, "The %s %s by %s costs %s dollars.", F("color"), F("product"), F("brand"), F("price"));
        return 1;
    }
    if (n == 4 && F("flight") && F("from") && F("to") && F("time")) {
        snprintf(out, cap, "Flight %s leaves %s for %s at %s.", F("flight"), F("from"), F("to"), F("time"));
        return 2;
    }
    if (n == 3 && F("title") && F("author") && F("year")) {
        snprintf(out, cap, "%s was written by %s in %s.", F("title"), F("author"), F("year"));
        return 3;
    }
#undef F
    return -1;
}

START_TEST(records_answers_are_right) {
    int set_counts[4] = {0};
    for (int64_t id = 0; id < N_CHECK; id++) {
        Ex e = get_ex(TASK_RECORDS, 5, id % 2, id);
        char rec[CAP], want[CAP];
        memcpy(rec, e.prompt, CAP);
        int set = expected_sentence(rec, want, sizeof want);
        REQUIRE(set >= 0, "record \"%s\" has none of the field sets", e.prompt);
        REQUIRE(strcmp(want, e.answer) == 0, "record \"%s\": answer \"%s\", expected \"%s\"", e.prompt, e.answer,
                want);
        set_counts[set]++;
    }
    for (int i = 0; i < 4; i++) ck_assert_int_gt(set_counts[i], 300);
}
END_TEST

static int has(const char *s, const char *w) { return strstr(s, w) != NULL; }

/* The query is well formed for the schema, and every literal comes from the question. */
static void check_sql(const char *q, const char *sql) {
    REQUIRE(strncmp(sql, "SELECT ", 7) == 0 && sql[strlen(sql) - 1] == ';', "\"%s\" is not SELECT ...;", sql);
    REQUIRE(has(sql, " FROM employees") || has(sql, " FROM departments"), "\"%s\": unknown table", sql);
    int quotes = 0;
    for (const char *c = sql; *c; c++) quotes += *c == '\'';
    REQUIRE(quotes % 2 == 0, "\"%s\": unbalanced quotes", sql);
    for (const char *c = strchr(sql, '\''); c; c = strchr(strchr(c + 1, '\'') + 1, '\'')) {
        char lit[64];
        size_t n = (size_t)(strchr(c + 1, '\'') - c - 1);
        REQUIRE(n < sizeof lit, "\"%s\": long literal", sql);
        memcpy(lit, c + 1, n);
        lit[n] = '\0';
        REQUIRE(has(q, lit), "\"%s\": literal '%s' is not in the question \"%s\"", sql, lit, q);
    }
    long qn[4], sn[4];
    int nq = numbers(q, qn, 4), ns = numbers(sql, sn, 4);
    REQUIRE(nq == ns && (ns == 0 || qn[0] == sn[0]), "\"%s\": numbers differ from \"%s\"", sql, q);
    /* The question's wording decides the query's shape. */
    REQUIRE(has(q, "How many") || has(q, "Count") ? has(sql, "COUNT(*)") : !has(sql, "COUNT"), "%s -> %s", q, sql);
    REQUIRE(has(q, "average") || has(q, "mean") ? has(sql, "AVG(salary)") : !has(sql, "AVG"), "%s -> %s", q, sql);
    REQUIRE(has(q, "total") || has(q, "Sum") ? has(sql, "SUM(salary)") : !has(sql, "SUM"), "%s -> %s", q, sql);
    REQUIRE(has(q, "more than") || has(q, "above") ? has(sql, "salary > ") : !has(sql, " > "), "%s -> %s", q, sql);
    REQUIRE(has(q, "less than") || has(q, "below") ? has(sql, "salary < ") : !has(sql, " < "), "%s -> %s", q, sql);
    REQUIRE(has(q, "manage") == has(sql, "SELECT manager FROM departments"), "%s -> %s", q, sql);
    REQUIRE(has(q, "floor") == has(sql, "floor"), "%s -> %s", q, sql);
}

START_TEST(sql_is_well_formed) {
    for (int64_t id = 0; id < N_CHECK; id++) {
        Ex e = get_ex(TASK_SQL, 9, id % 2, id);
        check_sql(e.prompt, e.answer);
    }
    ck_assert_ptr_nonnull(strstr(task_instruction(TASK_SQL), "employees(id, name, dept, salary, city)"));
    ck_assert_ptr_nonnull(strstr(task_instruction(TASK_SQL), "departments(name, floor, manager)"));
}
END_TEST

/* Roughly what a byte-level BPE makes of it: words, every digit alone, every punctuation mark. */
static int approx_tokens(const char *s) {
    int n = 0;
    for (const char *c = s; *c;) {
        if (isalpha((unsigned char)*c)) {
            while (isalpha((unsigned char)*c)) c++;
            n++;
        } else {
            n += !isspace((unsigned char)*c);
            c++;
        }
    }
    return n;
}

START_TEST(prompts_are_short) {
    for (int k = 0; k < TASK_COUNT; k++) {
        int worst = 0;
        for (int64_t id = 0; id < N_CHECK; id++) {
            Ex e = get_ex(k, 13, id % 2, id);
            int n = approx_tokens(e.prompt);
            worst = n > worst ? n : worst;
            REQUIRE(strlen(e.answer) > 0 && strlen(e.answer) < 120, "%s: answer \"%s\"", task_names[k], e.answer);
        }
        ck_assert_msg(worst < 60, "%s: a prompt of about %d tokens", task_names[k], worst);
    }
}
END_TEST

START_TEST(match_rules) {
    ck_assert(task_match(TASK_ARITH, " 17.", "17"));
    ck_assert(task_match(TASK_ARITH, "17", "17"));
    ck_assert(task_match(TASK_ARITH, "The answer is 17", "17"));
    ck_assert(task_match(TASK_ARITH, "17 marbles, since 14 - 5 + 8 = 17", "17"));
    ck_assert(task_match(TASK_ARITH, "017", "17"));
    ck_assert(task_match(TASK_ARITH, "17.0", "17"));
    ck_assert(!task_match(TASK_ARITH, "18", "17"));
    ck_assert(!task_match(TASK_ARITH, "170", "17"));
    ck_assert(!task_match(TASK_ARITH, "17.5", "17"));
    ck_assert(!task_match(TASK_ARITH, "-17", "17"));
    ck_assert(!task_match(TASK_ARITH, "14 - 5 + 8 = 17", "17")); /* the first number counts */
    ck_assert(!task_match(TASK_ARITH, "no idea", "17"));
    ck_assert(!task_match(TASK_ARITH, "", "17"));
    ck_assert(task_match(TASK_ARITH, "0", "0"));

    const char *ref = "Ana Ruiz is a 34-year-old chemist from Lyon.";
    ck_assert(task_match(TASK_RECORDS, ref, ref));
    ck_assert(task_match(TASK_RECORDS, "  Ana Ruiz  is a 34-year-old\tchemist\nfrom Lyon \n", ref));
    ck_assert(task_match(TASK_RECORDS, "Ana Ruiz is a 34-year-old chemist from Lyon", ref));
    ck_assert(!task_match(TASK_RECORDS, "Ana Ruiz is a 34-year-old chemist from Lyons.", ref));
    ck_assert(!task_match(TASK_RECORDS, "AnaRuiz is a 34-year-old chemist from Lyon.", ref));
    ck_assert(!task_match(TASK_RECORDS, "", ref));

    const char *sql = "SELECT COUNT(*) FROM employees WHERE dept = 'Sales';";
    ck_assert(task_match(TASK_SQL, " SELECT COUNT(*)  FROM employees\nWHERE dept = 'Sales'; ", sql));
    ck_assert(!task_match(TASK_SQL, "SELECT COUNT(*) FROM employees WHERE dept = 'sales';", sql));
    ck_assert(!task_match(TASK_SQL, NULL, sql));
}
END_TEST

START_TEST(bad_arguments_fail) {
    char p[CAP], a[CAP], tiny[8];
    ck_assert_int_eq(task_example(TASK_ARITH, 1, SPLIT_TRAIN, 0, tiny, sizeof tiny, a, CAP), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "prompt"));
    ck_assert_int_eq(task_example(TASK_ARITH, 1, SPLIT_TRAIN, 0, p, CAP, tiny, 1), PEFTC_EINVAL);
    ck_assert_ptr_nonnull(strstr(peftc_err_msg(), "answer"));
    ck_assert_int_eq(task_example(TASK_COUNT, 1, SPLIT_TRAIN, 0, p, CAP, a, CAP), PEFTC_EINVAL);
    ck_assert_int_eq(task_example(TASK_SQL, 1, (Split)2, 0, p, CAP, a, CAP), PEFTC_EINVAL);
    ck_assert_int_eq(task_example(TASK_SQL, 1, SPLIT_EVAL, -1, p, CAP, a, CAP), PEFTC_EINVAL);
    ck_assert_str_eq(task_names[TASK_SQL], "sql");
    ck_assert_ptr_null(task_names[TASK_COUNT]);
    for (int k = 0; k < TASK_COUNT; k++) ck_assert_int_gt((int)strlen(task_instruction(k)), 10);
    ck_assert_str_eq(task_instruction(TASK_COUNT), "");
}
END_TEST

static Suite *tasks_suite(void) {
    Suite *s = suite_create("tasks");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, same_id_same_text);
    tcase_add_test(tc, known_examples);
    tcase_add_test(tc, splits_are_disjoint);
    tcase_add_test(tc, arith_answers_are_right);
    tcase_add_test(tc, records_answers_are_right);
    tcase_add_test(tc, sql_is_well_formed);
    tcase_add_test(tc, prompts_are_short);
    tcase_add_test(tc, match_rules);
    tcase_add_test(tc, bad_arguments_fail);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run_suite(tasks_suite()); }
