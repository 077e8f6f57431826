/* tests/test_protocol.c - unit tests of server/protocol.c that the
 * end-to-end tests cannot reach: what the control server does with a
 * reply that holds a secret when there is no memory to write it out.
 *
 * Linked with -Wl,--wrap=ic_secure_alloc, so that a test can make the
 * locked allocations fail.
 */
#include <config.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <json-c/json.h>

#include "protocol.h"
#include "secmem.h"

#define SECRET \
  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

void *__real_ic_secure_alloc (size_t size);
void *__wrap_ic_secure_alloc (size_t size);

static bool fail_secure_alloc;

void *
__wrap_ic_secure_alloc (size_t size)
{
  return fail_secure_alloc ? NULL : __real_ic_secure_alloc (size);
}

static struct json_object *
derive_reply (void)
{
  struct json_object *reply = json_object_new_object ();

  json_object_object_add (reply, "ok", json_object_new_boolean (1));
  json_object_object_add (reply, "sw_secret",
                          json_object_new_string (SECRET));
  return reply;
}

/* What server/control.c does with a reply (client_send_json, worker):
 * the text is copied out, then wiped if the reply held a secret.
 */
static char *
send_reply (struct json_object *reply)
{
  const char *text = ic_protocol_reply_text (reply);
  char *sent = strdup (text);

  if (ic_protocol_wipe_secrets (reply))
    ic_memzero_explicit ((char *) text, strlen (text));
  json_object_put (reply);
  return sent;
}

START_TEST (reply_text_secret)
{
  char *sent = send_reply (derive_reply ());

  ck_assert_str_eq (sent, "{\"ok\":true,\"sw_secret\":\"" SECRET "\"}");
  free (sent);
}
END_TEST

/* Out of locked memory: an ENOMEM reply, which the caller must not wipe
 * (it was a string literal: SIGSEGV), and no secret in it.
 */
START_TEST (reply_text_enomem)
{
  struct json_object *reply = derive_reply ();
  char *sent;

  fail_secure_alloc = true;
  sent = send_reply (reply);
  fail_secure_alloc = false;
  ck_assert_ptr_null (strstr (sent, SECRET));
  ck_assert_ptr_nonnull (strstr (sent, "\"errno\":\"ENOMEM\""));
  free (sent);
  /* And the next reply is written out as before. */
  sent = send_reply (derive_reply ());
  ck_assert_ptr_nonnull (strstr (sent, SECRET));
  free (sent);
}
END_TEST

static Suite *
protocol_suite (void)
{
  Suite *s = suite_create ("protocol");
  TCase *tc = tcase_create ("reply_text");

  tcase_add_test (tc, reply_text_secret);
  tcase_add_test (tc, reply_text_enomem);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (protocol_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
