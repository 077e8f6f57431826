# Included by every Makefile.am.  Flags shared by all layers.

NULL =

AM_CFLAGS = \
	-std=gnu11 \
	$(WARNINGS_CFLAGS) \
	$(SANITIZER_CFLAGS) \
	$(PTHREAD_CFLAGS) \
	$(NULL)

AM_LDFLAGS = \
	$(SANITIZER_LDFLAGS) \
	$(PTHREAD_LIBS) \
	$(NULL)
