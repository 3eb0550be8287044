/* Built-in instruction tasks.
 *
 * Example (split, id) draws candidate problems from streams keyed by (seed, task, split, id, attempt)
 * and keeps the first whose text hashes into `split` (TASK_EVAL_PERCENT of all problems are held
 * out). The split hash ignores the seed, as in synthetic.c: held-out problems are a property of the
 * text, so no seed trains on another seed's held-out problems. Problems are small on purpose: a 135M
 * model should learn each task in a few hundred steps, and prompts stay under ~60 tokens. */
#include "datasets/tasks.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"

enum { TASK_EVAL_PERCENT = 20, TASK_MAX_ATTEMPTS = 1 << 12, TASK_TEXT_CAP = 512 };

const char *const task_names[] = {[TASK_ARITH] = "arith", [TASK_RECORDS] = "records", [TASK_SQL] = "sql", NULL};

static const char *const instructions[] = {
    [TASK_ARITH] = "Solve the math word problem. Answer with the number only.",
    [TASK_RECORDS] = "Rewrite the record as one English sentence.",
    [TASK_SQL] = "Write the SQL query that answers the question. Tables: employees(id, name, dept, salary, city); "
                 "departments(name, floor, manager). Answer with the query only.",
};

const char *task_instruction(TaskKind k) { return (unsigned)k < TASK_COUNT ? instructions[k] : ""; }

/* A bounded text being written; `overflow` marks a cut (reported as an error, never silently kept). */
typedef struct {
    char buf[TASK_TEXT_CAP];
    size_t len;
    int overflow;
} Text;

__attribute__((format(printf, 2, 3))) static void put(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof t->buf - t->len) {
        t->overflow = 1;
        t->len = sizeof t->buf - 1;
    } else {
        t->len += (size_t)n;
    }
}

static int pick(Rng *r, int n) { return (int)rng_next_below(r, (uint64_t)n); }
/* Uniform in [lo, hi]. */
static int range(Rng *r, int lo, int hi) { return lo + pick(r, hi - lo + 1); }
#define PICK(r, arr) ((arr)[pick((r), (int)(sizeof(arr) / sizeof *(arr)))])

/* ---- arith ---- */

typedef struct {
    const char *name;
    int female;
} Person;

static const Person people[] = {{"Mia", 1},  {"Leo", 0},  {"Ana", 1},  {"Sam", 0},   {"Zoe", 1},  {"Omar", 0},
                                {"Lily", 1}, {"Ben", 0},  {"Nora", 1}, {"Ravi", 0},  {"Emma", 1}, {"Jack", 0},
                                {"Sofia", 1}, {"Tom", 0}, {"Aisha", 1}, {"Luis", 0}, {"Maya", 1}, {"Ivan", 0}};
static const char *const objects[] = {"marbles", "apples", "stickers", "pencils", "cookies", "books",
                                      "coins",   "cards",  "shells",   "balloons", "stamps", "candies"};
static const char *const containers[][2] = {{"bag", "bags"}, {"box", "boxes"}, {"pack", "packs"}, {"jar", "jars"}};

typedef struct {
    Person a, b;
    const char *obj;
    const char *he; /* subject pronoun of a, capitalised */
    const char *him; /* object pronoun of a */
} Cast;

static Cast draw_cast(Rng *r) {
    int n = (int)(sizeof people / sizeof *people);
    int i = pick(r, n), j = pick(r, n - 1);
    Cast c = {.a = people[i], .b = people[j >= i ? j + 1 : j], .obj = PICK(r, objects)};
    c.he = c.a.female ? "She" : "He";
    c.him = c.a.female ? "her" : "him";
    return c;
}

/* Each template writes the problem and returns its answer (always >= 0 by construction). */
static long arith_give(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 5, 40), y = range(r, 1, x);
    put(p, "%s has %d %s. %s gives %d to %s. How many %s does %s have now?", c->a.name, x, c->obj, c->he, y,
        c->b.name, c->obj, c->a.name);
    return x - y;
}

static long arith_give_find(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 5, 30), y = range(r, 1, x), z = range(r, 1, 20);
    put(p, "%s has %d %s. %s gives %d to %s and then finds %d more. How many %s does %s have now?", c->a.name, x,
        c->obj, c->he, y, c->b.name, z, c->obj, c->a.name);
    return x - y + z;
}

static long arith_together(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 2, 50), y = range(r, 2, 50);
    put(p, "%s has %d %s and %s has %d %s. How many %s do they have together?", c->a.name, x, c->obj, c->b.name, y,
        c->obj, c->obj);
    return x + y;
}

static long arith_more_than(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 2, 30), y = range(r, 1, 20);
    put(p, "%s has %d %s. %s has %d more %s than %s. How many %s do they have together?", c->a.name, x, c->obj,
        c->b.name, y, c->obj, c->a.name, c->obj);
    return 2L * x + y;
}

static long arith_fewer(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 5, 50), y = range(r, 1, x - 1);
    put(p, "%s has %d %s. %s has %d fewer %s than %s. How many %s does %s have?", c->a.name, x, c->obj, c->b.name, y,
        c->obj, c->a.name, c->obj, c->b.name);
    return x - y;
}

static long arith_groups(Rng *r, const Cast *c, Text *p) {
    const char *const *box = containers[pick(r, (int)(sizeof containers / sizeof *containers))];
    int n = range(r, 2, 9), k = range(r, 2, 12);
    put(p, "%s buys %d %s of %s. Each %s has %d %s. How many %s does %s buy?", c->a.name, n, box[1], c->obj, box[0],
        k, c->obj, c->obj, c->a.name);
    return (long)n * k;
}

static long arith_groups_minus(Rng *r, const Cast *c, Text *p) {
    const char *const *box = containers[pick(r, (int)(sizeof containers / sizeof *containers))];
    int n = range(r, 2, 6), k = range(r, 2, 10), y = range(r, 1, n * k);
    put(p, "%s has %d %s with %d %s in each. %s gives away %d %s. How many %s are left?", c->a.name, n, box[1], k,
        c->obj, c->he, y, c->obj, c->obj);
    return (long)n * k - y;
}

static long arith_received(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 2, 30), y = x + range(r, 1, 30);
    put(p, "%s had %d %s. After %s gave %s some more, %s has %d. How many %s did %s give %s?", c->a.name, x, c->obj,
        c->b.name, c->him, c->a.female ? "she" : "he", y, c->obj, c->b.name, c->him);
    return y - x;
}

static long arith_share(Rng *r, const Cast *c, Text *p) {
    int n = range(r, 2, 8), k = range(r, 2, 10);
    put(p, "%s shares %d %s equally among %d friends. How many %s does each friend get?", c->a.name, n * k, c->obj, n,
        c->obj);
    return k;
}

static long arith_money(Rng *r, const Cast *c, Text *p) {
    int x = range(r, 5, 40), y = range(r, 5, 40), z = range(r, 1, x + y);
    put(p, "%s earns %d dollars on Monday and %d dollars on Tuesday. %s spends %d dollars. How many dollars does %s "
           "have left?",
        c->a.name, x, y, c->he, z, c->a.name);
    return x + y - z;
}

typedef long (*ArithTemplate)(Rng *r, const Cast *c, Text *p);
static const ArithTemplate arith_templates[] = {arith_give,   arith_give_find,    arith_together, arith_more_than,
                                                arith_fewer,  arith_groups,       arith_groups_minus,
                                                arith_received, arith_share,      arith_money};

static void gen_arith(Rng *r, Text *prompt, Text *answer) {
    ArithTemplate f = PICK(r, arith_templates);
    Cast c = draw_cast(r);
    put(answer, "%ld", f(r, &c, prompt));
}

/* ---- records ---- */

static const char *const first_names[] = {"Ana", "Marco", "Yuki", "Lena", "Omar", "Priya", "Jonas", "Clara",
                                          "Diego", "Hana", "Felix", "Irene", "Tariq", "Mei", "Paul", "Rosa"};
static const char *const last_names[] = {"Ruiz", "Bauer", "Tanaka", "Novak", "Haddad", "Shah", "Berg", "Costa",
                                         "Moreau", "Kim", "Weber", "Rossi", "Nasser", "Chen", "Dubois", "Silva"};
static const char *const cities[] = {"Lyon", "Boston", "Madrid", "Osaka", "Toronto", "Berlin", "Lima", "Oslo",
                                     "Cairo", "Dublin", "Seoul", "Porto", "Quito", "Vienna", "Perth", "Accra"};
static const char *const jobs[] = {"chemist", "teacher", "nurse", "pilot", "baker", "lawyer", "painter",
                                   "plumber", "dentist", "farmer", "writer", "carpenter", "designer", "surgeon"};
static const char *const products[] = {"lamp", "chair", "backpack", "kettle", "jacket", "desk", "clock", "bicycle",
                                       "blender", "umbrella", "guitar", "tent"};
static const char *const brands[] = {"Lumo", "Norrix", "Vela", "Kato", "Brisk", "Alden", "Omni", "Terra"};
static const char *const colors[] = {"red", "blue", "green", "black", "white", "gray", "yellow", "brown"};
static const char *const title_adjs[] = {"Silent", "Hidden", "Last", "Golden", "Broken", "Distant", "Quiet", "Bright"};
static const char *const title_nouns[] = {"River", "Garden", "Harbor", "Mountain", "Letter", "Window", "Forest",
                                          "Island"};

enum { REC_MAX_FIELDS = 4 };

/* Writes "k1: v1 | k2: v2 | ..." with the fields in a random order, so the model has to find each one. */
static void put_record(Rng *r, Text *p, const char *const keys[], char vals[][64], int n) {
    int order[REC_MAX_FIELDS];
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = pick(r, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < n; i++) put(p, "%s%s: %s", i ? " | " : "", keys[order[i]], vals[order[i]]);
}

static void rec_person(Rng *r, Text *p, Text *a) {
    static const char *const keys[] = {"name", "age", "city", "job"};
    char v[4][64];
    snprintf(v[0], sizeof v[0], "%s %s", PICK(r, first_names), PICK(r, last_names));
    snprintf(v[1], sizeof v[1], "%d", range(r, 21, 69)); /* 21..69 all take "a", never "an" */
    snprintf(v[2], sizeof v[2], "%s", PICK(r, cities));
    snprintf(v[3], sizeof v[3], "%s", PICK(r, jobs));
    put_record(r, p, keys, v, 4);
    put(a, "%s is a %s-year-old %s from %s.", v[0], v[1], v[3], v[2]);
}

static void rec_product(Rng *r, Text *p, Text *a) {
    static const char *const keys[] = {"product", "brand", "color", "price"};
    char v[4][64];
    snprintf(v[0], sizeof v[0], "%s", PICK(r, products));
    snprintf(v[1], sizeof v[1], "%s", PICK(r, brands));
    snprintf(v[2], sizeof v[2], "%s", PICK(r, colors));
    snprintf(v[3], sizeof v[3], "%d", range(r, 5, 500));
    put_record(r, p, keys, v, 4);
    put(a, "The %s %s by %s costs %s dollars.", v[2], v[0], v[1], v[3]);
}

static void rec_flight(Rng *r, Text *p, Text *a) {
    static const char *const keys[] = {"flight", "from", "to", "time"};
    int n = (int)(sizeof cities / sizeof *cities), i = pick(r, n), j = pick(r, n - 1);
    char v[4][64];
    snprintf(v[0], sizeof v[0], "%c%c%d", 'A' + pick(r, 26), 'A' + pick(r, 26), range(r, 100, 999));
    snprintf(v[1], sizeof v[1], "%s", cities[i]);
    snprintf(v[2], sizeof v[2], "%s", cities[j >= i ? j + 1 : j]);
    snprintf(v[3], sizeof v[3], "%02d:%02d", range(r, 0, 23), 5 * range(r, 0, 11));
    put_record(r, p, keys, v, 4);
    put(a, "Flight %s leaves %s for %s at %s.", v[0], v[1], v[2], v[3]);
}

static void rec_book(Rng *r, Text *p, Text *a) {
    static const char *const keys[] = {"title", "author", "year"};
    char v[3][64];
    snprintf(v[0], sizeof v[0], "The %s %s", PICK(r, title_adjs), PICK(r, title_nouns));
    snprintf(v[1], sizeof v[1], "%s %s", PICK(r, first_names), PICK(r, last_names));
    snprintf(v[2], sizeof v[2], "%d", range(r, 1900, 2023));
    put_record(r, p, keys, v, 3);
    put(a, "%s was written by %s in %s.", v[0], v[1], v[2]);
}

static void gen_records(Rng *r, Text *prompt, Text *answer) {
    static void (*const sets[])(Rng *, Text *, Text *) = {rec_person, rec_product, rec_flight, rec_book};
    PICK(r, sets)(r, prompt, answer);
}

/* ---- sql ---- */

static const char *const depts[] = {"Sales",  "Marketing", "Engineering", "Finance",  "Support",   "Legal",
                                    "Research", "Design",  "Logistics",   "Security", "Purchasing", "Training"};

/* A question template: two phrasings of one query, so held-out problems include wordings of a query
 * whose other wording was trained on. Slots: {D} department, {C} city, {N} salary, {F} floor. */
typedef struct {
    const char *q[2];
    const char *sql;
} SqlTemplate;

static const SqlTemplate sql_templates[] = {
    {{"How many employees work in {D}?", "Count the employees in the {D} department."},
     "SELECT COUNT(*) FROM employees WHERE dept = '{D}';"},
    {{"List the names of employees in {C}.", "Which employees live in {C}?"},
     "SELECT name FROM employees WHERE city = '{C}';"},
    {{"What is the average salary in {D}?", "Give the mean salary of the {D} department."},
     "SELECT AVG(salary) FROM employees WHERE dept = '{D}';"},
    {{"Which employees earn more than {N}?", "List the names of employees with a salary above {N}."},
     "SELECT name FROM employees WHERE salary > {N};"},
    {{"How many employees earn less than {N}?", "Count the employees whose salary is below {N}."},
     "SELECT COUNT(*) FROM employees WHERE salary < {N};"},
    {{"What is the highest salary in {C}?", "Find the top salary among employees in {C}."},
     "SELECT MAX(salary) FROM employees WHERE city = '{C}';"},
    {{"Who manages the {D} department?", "Name the manager of {D}."},
     "SELECT manager FROM departments WHERE name = '{D}';"},
    {{"On which floor is the {D} department?", "What floor is {D} on?"},
     "SELECT floor FROM departments WHERE name = '{D}';"},
    {{"List the employees in {D} who live in {C}.", "Which {D} employees are based in {C}?"},
     "SELECT name FROM employees WHERE dept = '{D}' AND city = '{C}';"},
    {{"List the employees in {D} from highest to lowest salary.",
      "Show the {D} staff ordered by salary, highest first."},
     "SELECT name FROM employees WHERE dept = '{D}' ORDER BY salary DESC;"},
    {{"What is the total salary of employees in {C}?", "Sum the salaries of everyone in {C}."},
     "SELECT SUM(salary) FROM employees WHERE city = '{C}';"},
    {{"Which employees work in a department on floor {F}?", "List the employees whose department is on floor {F}."},
     "SELECT e.name FROM employees e JOIN departments d ON e.dept = d.name WHERE d.floor = {F};"},
    {{"How many employees in {C} earn more than {N}?", "Count the employees in {C} with a salary above {N}."},
     "SELECT COUNT(*) FROM employees WHERE city = '{C}' AND salary > {N};"},
    {{"How many employees in {D} earn less than {N}?", "Count the {D} employees with a salary below {N}."},
     "SELECT COUNT(*) FROM employees WHERE dept = '{D}' AND salary < {N};"},
    {{"List the {D} employees who earn more than {N}.", "Which employees in {D} have a salary above {N}?"},
     "SELECT name FROM employees WHERE dept = '{D}' AND salary > {N};"},
    {{"What is the average salary of {D} employees in {C}?", "Give the mean salary in {D} for staff based in {C}."},
     "SELECT AVG(salary) FROM employees WHERE dept = '{D}' AND city = '{C}';"},
    {{"Which departments are on floor {F}?", "List the departments located on floor {F}."},
     "SELECT name FROM departments WHERE floor = {F};"},
};

typedef struct {
    const char *dept, *city;
    char salary[16], floor[16];
} SqlSlots;

static void sql_fill(Text *t, const char *pattern, const SqlSlots *s) {
    for (const char *c = pattern; *c; c++) {
        if (c[0] == '{' && c[1] && c[2] == '}') {
            const char *v = c[1] == 'D' ? s->dept : c[1] == 'C' ? s->city : c[1] == 'N' ? s->salary : s->floor;
            put(t, "%s", v);
            c += 2;
        } else {
            put(t, "%c", *c);
        }
    }
}

static void gen_sql(Rng *r, Text *prompt, Text *answer) {
    const SqlTemplate *tp = &PICK(r, sql_templates);
    SqlSlots s = {.dept = PICK(r, depts), .city = PICK(r, cities)};
    snprintf(s.salary, sizeof s.salary, "%d", 1000 * range(r, 30, 150));
    snprintf(s.floor, sizeof s.floor, "%d", range(r, 1, 12));
    sql_fill(prompt, tp->q[pick(r, 2)], &s);
    sql_fill(answer, tp->sql, &s);
}

/* ---- splits ---- */

static uint64_t text_hash(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return rng_key(rng_key_str(0, "tasks.split"), h);
}

static void generate(TaskKind k, Rng *r, Text *prompt, Text *answer) {
    prompt->len = answer->len = 0;
    prompt->overflow = answer->overflow = 0;
    prompt->buf[0] = answer->buf[0] = '\0';
    if (k == TASK_ARITH) gen_arith(r, prompt, answer);
    else if (k == TASK_RECORDS) gen_records(r, prompt, answer);
    else gen_sql(r, prompt, answer);
}

static PeftcStatus copy_out(const char *what, const Text *t, char *dst, size_t cap) {
    if (t->overflow || t->len >= cap)
        return PEFTC_ERR(PEFTC_EINVAL, "task_example: %s needs %zu bytes, buffer holds %zu", what, t->len + 1, cap);
    memcpy(dst, t->buf, t->len + 1);
    return PEFTC_OK;
}

PeftcStatus task_example(TaskKind k, uint64_t seed, Split split, int64_t id, char *prompt, size_t prompt_cap,
                         char *answer, size_t answer_cap) {
    if ((unsigned)k >= TASK_COUNT) return PEFTC_ERR(PEFTC_EINVAL, "data.task: no built-in text task number %d", (int)k);
    if (split != SPLIT_TRAIN && split != SPLIT_EVAL)
        return PEFTC_ERR(PEFTC_EINVAL, "task_example: split must be SPLIT_TRAIN or SPLIT_EVAL, got %d", (int)split);
    if (id < 0) return PEFTC_ERR(PEFTC_EINVAL, "task_example: example id must be >= 0, got %lld", (long long)id);
    if (!prompt || !answer) return PEFTC_ERR(PEFTC_EINVAL, "task_example: prompt and answer must not be NULL");
    uint64_t key = rng_key(rng_key(rng_key(rng_key_str(seed, "tasks.example"), (uint64_t)k), (uint64_t)split),
                           (uint64_t)id);
    Text p, a;
    for (uint64_t attempt = 0; attempt < TASK_MAX_ATTEMPTS; attempt++) {
        Rng r = rng_make(rng_key(key, attempt));
        generate(k, &r, &p, &a);
        if (((int)(text_hash(p.buf) % 100) < TASK_EVAL_PERCENT) != (split == SPLIT_EVAL)) continue;
        PEFTC_TRY(copy_out("prompt", &p, prompt, prompt_cap));
        return copy_out("answer", &a, answer, answer_cap);
    }
    /* With a 20% split this is reached with probability 0.8^4096: a generator bug, not bad luck. */
    return PEFTC_ERR(PEFTC_ESTATE, "data.task=%s: no problem fell in the %s split after %d draws", task_names[k],
                     split == SPLIT_EVAL ? "eval" : "train", (int)TASK_MAX_ATTEMPTS);
}

/* ---- matching ---- */

/* s trimmed, one trailing period dropped, internal whitespace runs as one space; malloc'd. */
static char *normalise(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n && s[n - 1] == '.') n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isspace((unsigned char)s[i])) out[w++] = s[i];
        else if (w && out[w - 1] != ' ') out[w++] = ' ';
    }
    out[w] = '\0';
    return out;
}

/* The first number in s: sign, integer digits without leading zeros, and whether a non-zero fraction
 * follows ("17.5" is not 17). Returns 0 when s holds no digit. */
typedef struct {
    int negative, fraction;
    const char *digits;
    size_t n;
} Number;

static int first_number(const char *s, Number *out) {
    const char *d = s;
    while (*d && !isdigit((unsigned char)*d)) d++;
    if (!*d) return 0;
    out->negative = d > s && d[-1] == '-';
    const char *e = d;
    while (isdigit((unsigned char)*e)) e++;
    while (d + 1 < e && *d == '0') d++;
    out->digits = d;
    out->n = (size_t)(e - d);
    out->fraction = 0;
    if (*e == '.' && isdigit((unsigned char)e[1]))
        for (const char *f = e + 1; isdigit((unsigned char)*f); f++) out->fraction |= *f != '0';
    return 1;
}

static int numbers_match(const char *generated, const char *reference) {
    Number g, r;
    if (!first_number(generated, &g) || !first_number(reference, &r)) return 0;
    return g.negative == r.negative && !g.fraction && !r.fraction && g.n == r.n && memcmp(g.digits, r.digits, g.n) == 0;
}

int task_match(TaskKind k, const char *generated, const char *reference) {
    if (!generated || !reference) return 0;
    if (k == TASK_ARITH) return numbers_match(generated, reference);
    char *g = normalise(generated), *r = normalise(reference);
    int same = g && r && strcmp(g, r) == 0;
    free(g);
    free(r);
    return same;
}
