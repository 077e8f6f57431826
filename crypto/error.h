/* crypto/error.h - one place where every failure is explained.
 *
 * The reason for a failure is written once, where it is detected, through
 * ic_error().  The text is always kept per thread for ic_last_error() (unit
 * tests assert on it; the control server copies it into its reply), and is
 * also handed to the sink installed with ic_error_set_sink() (the nbdkit
 * plugin installs nbdkit_error) unless the calling thread captures errors.
 *
 * Messages read "<object>: <operation>: <reason>" and never contain key
 * bytes.  Thread-safe.
 */
#ifndef IC_ERROR_H
#define IC_ERROR_H

#include <stdbool.h>

#define IC_ERROR_MAX 1024

typedef void (*ic_log_fn) (const char *msg);

/* Record @fmt as the calling thread's last error and pass it to the sink.
 * Preserves errno.
 *
 * Context: any thread; never blocks.
 */
void ic_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Send a message to the error sink even while the calling thread captures
 * errors, without making it the thread's last error: for what the
 * operator must hear of whatever request caused it (the locked pool
 * running out).  Preserves errno.
 */
void ic_log_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* The calling thread's last error text ("" if none). */
const char *ic_last_error (void);

/* Forget the calling thread's last error. */
void ic_clear_error (void);

/* Debug output: to the debug sink, or stderr when IC_DEBUG is set in the
 * environment and no sink is installed.  Preserves errno.
 */
void ic_debug (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Install process-wide sinks (NULL: none).  Called once at load time. */
void ic_error_set_sink (ic_log_fn error_fn, ic_log_fn debug_fn);

/* While @capture is true, errors of the calling thread are only kept for
 * ic_last_error(), not sent to the sink (the control server reports them
 * to its client instead).
 *
 * Return: the previous setting.
 */
bool ic_error_capture (bool capture);

/* The text of errno value @err ("No such file or directory"), always the
 * untranslated one.  Use it instead of strerror(): strerror's gettext
 * lookup takes glibc's locale lock, which a preloaded sanitizer runtime
 * leaves unbalanced in nbdkit's main thread, and the exit that follows a
 * failed start then hangs in a library destructor's freelocale().
 */
const char *ic_strerror (int err);

/* The symbolic name of an errno value ("EBUSY"), or "E?" if unknown. */
const char *ic_errno_name (int err);

/* The errno value of a symbolic name ("EIO"), or 0 if unknown. */
int ic_errno_from_name (const char *name);

#endif /* IC_ERROR_H */
