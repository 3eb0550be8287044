/* Errors are values: library code returns a PeftcStatus and records one message with its origin;
 * only launch/ decides to print and exit. */
#ifndef PEFTC_STATUS_H
#define PEFTC_STATUS_H

typedef enum {
    PEFTC_OK = 0,
    PEFTC_EINVAL = 1,   /* bad argument or configuration value */
    PEFTC_EIO = 2,      /* a file could not be read or written */
    PEFTC_EFORMAT = 3,  /* a file's content is not what was expected */
    PEFTC_ENOMEM = 4,   /* allocation failed */
    PEFTC_ECOMM = 5,    /* a collective failed or another rank reported an error */
    PEFTC_ESTATE = 6,   /* an object was used in the wrong state (e.g. before finalize) */
} PeftcStatus;

/* Records a message (printf-style) tagged with the caller's file:line and returns `st`, so errors
 * can be raised in one line:  return PEFTC_ERR(PEFTC_EINVAL, "lora.r must be >= 1, got %d", r); */
PeftcStatus peftc_err_set(PeftcStatus st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define PEFTC_ERR(st, ...) peftc_err_set((st), __FILE__, __LINE__, __VA_ARGS__)

/* The last message recorded on this thread ("" if none), and its origin "file:line". */
const char *peftc_err_msg(void);
const char *peftc_err_origin(void);
void peftc_err_clear(void);
const char *peftc_status_name(PeftcStatus st);

/* Propagates a non-OK status to the caller unchanged. */
#define PEFTC_TRY(expr)                                                                                \
    do {                                                                                               \
        PeftcStatus peftc_try_st_ = (expr);                                                            \
        if (peftc_try_st_ != PEFTC_OK) return peftc_try_st_;                                           \
    } while (0)

#endif
