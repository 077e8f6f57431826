/* crypto/error.c - see error.h. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static ic_log_fn error_sink;
static ic_log_fn debug_sink;
static __thread char last_error[IC_ERROR_MAX];
static __thread bool capturing;

void
ic_error_set_sink (ic_log_fn error_fn, ic_log_fn debug_fn)
{
  error_sink = error_fn;
  debug_sink = debug_fn;
}

bool
ic_error_capture (bool capture)
{
  bool old = capturing;

  capturing = capture;
  return old;
}

void
ic_error (const char *fmt, ...)
{
  int saved_errno = errno;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (last_error, sizeof last_error, fmt, ap);
  va_end (ap);
  if (error_sink && !capturing)
    error_sink (last_error);
  errno = saved_errno;
}

void
ic_log_error (const char *fmt, ...)
{
  int saved_errno = errno;
  char msg[IC_ERROR_MAX];
  va_list ap;

  if (!error_sink)
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  error_sink (msg);
  errno = saved_errno;
}

const char *
ic_last_error (void)
{
  return last_error;
}

void
ic_clear_error (void)
{
  last_error[0] = '\0';
}

void
ic_debug (const char *fmt, ...)
{
  int saved_errno = errno;
  char msg[IC_ERROR_MAX];
  va_list ap;

  if (!debug_sink && !getenv ("IC_DEBUG"))
    return;
  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (debug_sink)
    debug_sink (msg);
  else
    fprintf (stderr, "inlinecrypt: debug: %s\n", msg);
  errno = saved_errno;
}

/* The errnos that inlinecrypt returns or passes through. */
static const struct { int err; const char *name; } names[] = {
  { 0, "OK" },
  { EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" },
  { E2BIG, "E2BIG" }, { EBADF, "EBADF" }, { EAGAIN, "EAGAIN" },
  { ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EFAULT, "EFAULT" },
  { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" }, { ENODEV, "ENODEV" },
  { EINVAL, "EINVAL" }, { ENOSPC, "ENOSPC" }, { EROFS, "EROFS" },
  { ERANGE, "ERANGE" }, { EDEADLK, "EDEADLK" }, { ENOSYS, "ENOSYS" },
  { ENODATA, "ENODATA" }, { ETIME, "ETIME" }, { ENOPKG, "ENOPKG" },
  { EPROTO, "EPROTO" }, { EBADMSG, "EBADMSG" }, { EOVERFLOW, "EOVERFLOW" },
  { EILSEQ, "EILSEQ" }, { EMSGSIZE, "EMSGSIZE" },
  { EOPNOTSUPP, "EOPNOTSUPP" }, { ESHUTDOWN, "ESHUTDOWN" },
  { ETIMEDOUT, "ETIMEDOUT" }, { ECONNREFUSED, "ECONNREFUSED" },
  { ECONNRESET, "ECONNRESET" }, { ENOTCONN, "ENOTCONN" },
  { ELOOP, "ELOOP" }, { ENAMETOOLONG, "ENAMETOOLONG" },
  { ENOKEY, "ENOKEY" }, { EKEYREJECTED, "EKEYREJECTED" },
  { ECANCELED, "ECANCELED" }, { ENXIO, "ENXIO" }, { ESRCH, "ESRCH" },
};

const char *
ic_errno_name (int err)
{
  size_t i;

  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].err == err)
      return names[i].name;
  return "E?";
}

int
ic_errno_from_name (const char *name)
{
  size_t i;

  for (i = 1; i < sizeof names / sizeof names[0]; i++)
    if (strcmp (names[i].name, name) == 0)
      return names[i].err;
  return 0;
}

const char *
ic_strerror (int err)
{
  const char *s = strerrordesc_np (err);

  return s ? s : "Unknown error";
}
