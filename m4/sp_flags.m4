# SP_CHECK_CFLAGS_APPEND(VAR, FLAGS)
# Append each flag in FLAGS to VAR if the C compiler accepts it with -Werror
# (so an unknown warning flag is dropped rather than breaking -Werror builds).
AC_DEFUN([SP_CHECK_CFLAGS_APPEND], [
  for sp_flag in $2; do
    AS_VAR_PUSHDEF([sp_cache], [sp_cv_cflag_$sp_flag])
    AC_CACHE_CHECK([whether $CC accepts $sp_flag], [sp_cache], [
      sp_save_CFLAGS=$CFLAGS
      sp_save_LDFLAGS=$LDFLAGS
      CFLAGS="$CFLAGS -Werror $sp_flag"
      LDFLAGS="$LDFLAGS $sp_flag"
      AC_LINK_IFELSE([AC_LANG_PROGRAM([], [])],
                     [AS_VAR_SET([sp_cache], [yes])], [AS_VAR_SET([sp_cache], [no])])
      CFLAGS=$sp_save_CFLAGS
      LDFLAGS=$sp_save_LDFLAGS])
    AS_VAR_IF([sp_cache], [yes], [$1="[$]$1 $sp_flag"])
    AS_VAR_POPDEF([sp_cache])
  done
])

# AX_PTHREAD_SIMPLE: glibc >= 2.34 has pthreads in libc, -pthread still sets the macros.
AC_DEFUN([AX_PTHREAD_SIMPLE], [
  PTHREAD_CFLAGS=-pthread
  PTHREAD_LIBS=-pthread
  AC_SUBST([PTHREAD_CFLAGS])
  AC_SUBST([PTHREAD_LIBS])
])
