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
    PEFTC_EWRITE = 7,   /* an output file could not be written (disk full, read-only, permissions) */
    PEFTC_EDIVERGED = 8, /* training produced a non-finite loss or gradient */
    PEFTC_EBUSY = 9,    /* a folder is in use by another run */
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
/* The failure the last message stands for: its own status, or for a message that reports another
 * rank's failure (PEFTC_ECOMM), that rank's status as peftc_err_set_cause recorded it. launch/ maps
 * it to the process's exit code, so every rank of a failed run exits with the same code. */
PeftcStatus peftc_err_cause(void);
void peftc_err_set_cause(PeftcStatus cause);
const char *peftc_status_name(PeftcStatus st);

/* Propagates a non-OK status to the caller unchanged. */
#define PEFTC_TRY(expr)                                                                                \
    do {                                                                                               \
        PeftcStatus peftc_try_st_ = (expr);                                                            \
        if (peftc_try_st_ != PEFTC_OK) return peftc_try_st_;                                           \
    } while (0)

#endif
