#include "ticket_rules.h"

#include <ctype.h>
#include <string.h>

static const struct {
    const char *prefix;
    const char *kind;
} KINDS[] = {
    {"INC", "Incident"},
    {"REQ", "ServiceRequest"},
    {"CHG", "Change"},
    {"PRB", "Problem"},
};

static int luhn_check_digit(const char *digits, size_t n) {
    int total = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digits[n - 1 - i] - '0';
        if (i % 2 == 0) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        total += d;
    }
    return (10 - total % 10) % 10;
}

enum ticket_status ticket_parse(const char *text, size_t len, struct ticket *out) {
    /* "KKK-YYYY-NNNNNC" is exactly 15 bytes. */
    if (len != 15 || text[3] != '-' || text[8] != '-') return TICKET_MALFORMED;
    char digits[9];
    for (size_t i = 0; i < 3; i++)
        if (!isalpha((unsigned char)text[i])) return TICKET_MALFORMED;
    for (size_t i = 4; i < 15; i++) {
        if (i == 8) continue;
        if (!isdigit((unsigned char)text[i])) return TICKET_MALFORMED;
    }
    memcpy(digits, text + 4, 4);
    memcpy(digits + 4, text + 9, 5);

    char prefix[4];
    for (size_t i = 0; i < 3; i++) prefix[i] = (char)toupper((unsigned char)text[i]);
    prefix[3] = 0;
    out->kind = NULL;
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        if (strcmp(prefix, KINDS[i].prefix) == 0) out->kind = KINDS[i].kind;
    if (!out->kind) return TICKET_UNKNOWN_KIND;

    out->year = 0;
    for (size_t i = 0; i < 4; i++) out->year = out->year * 10 + (digits[i] - '0');
    if (out->year < 2000 || out->year > 2099) return TICKET_BAD_YEAR;
    out->serial = 0;
    for (size_t i = 4; i < 9; i++) out->serial = out->serial * 10 + (digits[i] - '0');
    out->check_digit = text[14] - '0';
    out->expected_digit = luhn_check_digit(digits, 9);
    return TICKET_OK;
}
