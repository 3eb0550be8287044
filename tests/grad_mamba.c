/* The Mamba family in the double build against transformers' float64 values (tests/mamba_parity.h):
 * the fixture is exact to ~1e-14, so agreement here is limited only by summation order. */
#include "tests/mamba_parity.h"
#include "tests/testutil.h"

#define TOL 1e-10

START_TEST(forward_and_gradients_match_transformers_f64) { mp_forward_and_grads(TOL); }
END_TEST

START_TEST(generation_with_state_matches_full_forward_f64) { mp_generation(TOL); }
END_TEST

int main(void) {
    Suite *s = suite_create("mamba_f64");
    TCase *tc = tcase_create("mamba_f64");
    tcase_add_test(tc, forward_and_gradients_match_transformers_f64);
    tcase_add_test(tc, generation_with_state_matches_full_forward_f64);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
