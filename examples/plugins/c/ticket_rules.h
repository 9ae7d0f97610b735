/* Ticket number rules, independent of the bindings (plain C, testable
 * natively): KIND-YYYY-NNNNNC, where NNNNN is the serial and C a Luhn
 * check digit over the nine digits YYYYNNNNN. */
#ifndef TICKET_RULES_H
#define TICKET_RULES_H

#include <stddef.h>

enum ticket_status {
    TICKET_OK = 0,
    TICKET_MALFORMED = 3,
    TICKET_UNKNOWN_KIND = 4,
    TICKET_BAD_YEAR = 5,
};

struct ticket {
    const char *kind; /* e.g. "Incident" */
    int year;
    int serial;
    int check_digit;    /* as written */
    int expected_digit; /* as computed */
};

/* Parses `text` (not NUL-terminated, `len` bytes). */
enum ticket_status ticket_parse(const char *text, size_t len, struct ticket *out);

#endif
