/* crypto/list.h - intrusive doubly-linked lists, after Linux
 * include/linux/list.h (list_head, hlist).  No locking: the owner's lock
 * protects a list.
 */
#ifndef IC_LIST_H
#define IC_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define ic_container_of(ptr, type, member) \
  ((type *) ((char *) (ptr) - offsetof (type, member)))

/* Circular list with a head node. */
struct ic_list_head {
  struct ic_list_head *next;
  struct ic_list_head *prev;
};

static inline void
ic_list_init (struct ic_list_head *head)
{
  head->next = head;
  head->prev = head;
}

static inline bool
ic_list_empty (const struct ic_list_head *head)
{
  return head->next == head;
}

static inline void
ic_list_add_tail (struct ic_list_head *node, struct ic_list_head *head)
{
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}

static inline void
ic_list_del (struct ic_list_head *node)
{
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->next = node;
  node->prev = node;
}

#define ic_list_first_entry(head, type, member) \
  ic_container_of ((head)->next, type, member)

/* Hash bucket list: one pointer per bucket. */
struct ic_hlist_node {
  struct ic_hlist_node *next;
  struct ic_hlist_node **pprev;
};

struct ic_hlist_head {
  struct ic_hlist_node *first;
};

static inline void
ic_hlist_add_head (struct ic_hlist_node *node, struct ic_hlist_head *head)
{
  node->next = head->first;
  if (head->first)
    head->first->pprev = &node->next;
  head->first = node;
  node->pprev = &head->first;
}

static inline void
ic_hlist_del (struct ic_hlist_node *node)
{
  *node->pprev = node->next;
  if (node->next)
    node->next->pprev = node->pprev;
  node->next = NULL;
  node->pprev = NULL;
}

#endif /* IC_LIST_H */
