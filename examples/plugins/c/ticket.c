/* `Ticket` ESP service, written in C (wit-bindgen c, clang wasm32-wasi (preview1),
 * wasm-tools component new with the preview1 reactor adapter).
 *
 * Method `Validate`: parameter `TicketNumber`, e.g. "INC-2024-000123"
 * (kind, year, 5-digit serial, Luhn check digit over year and serial; see
 * ticket_rules.c). Answer: `Valid` (1/0), `Kind`, `Year`, `Serial`, and
 * `Reason` when the check digit is wrong.
 *
 * Faults (ESP 3005 with ComponentFaultCode):
 *   1 unknown method
 *   2 missing parameter, or not a string
 *   3 not a ticket number (format)
 *   4 unknown ticket kind
 *   5 year outside 2000-2099
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_service.h"
#include "ticket_rules.h"

typedef esp_service_string_t string_t;
typedef wasp_esp_types_pair_t pair_t;
typedef wasp_esp_types_value_t value_t;

static void str_set(string_t *s, const char *text) { esp_service_string_dup(s, text); }

static void fault(exports_wasp_esp_service_fault_t *err, int32_t code, const char *message) {
    err->code = code;
    str_set(&err->message, message);
}

static int str_eq(const string_t *s, const char *text) {
    return s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

static void log_line(wasp_esp_log_level_t level, const char *message, const char *key,
                     const char *value) {
    string_t msg;
    esp_service_tuple2_string_string_t field;
    esp_service_list_tuple2_string_string_t fields = {&field, 1};
    str_set(&msg, message);
    str_set(&field.f0, key);
    str_set(&field.f1, value);
    wasp_esp_log_log(level, &msg, &fields);
    esp_service_string_free(&msg);
    esp_service_string_free(&field.f0);
    esp_service_string_free(&field.f1);
}

void exports_wasp_esp_service_describe(exports_wasp_esp_service_service_info_t *ret) {
    str_set(&ret->service_type, "Ticket");
    str_set(&ret->version, "1.0");
    ret->methods.len = 1;
    ret->methods.ptr = malloc(sizeof(string_t));
    str_set(&ret->methods.ptr[0], "Validate");
}

/* The root-list value for `key`, or NULL. */
static const value_t *param(const exports_wasp_esp_service_request_t *req, const char *key) {
    if (req->parameters.lists.len == 0) return NULL;
    const wasp_esp_types_list_pair_t *root = &req->parameters.lists.ptr[0];
    for (size_t i = 0; i < root->len; i++)
        if (str_eq(&root->ptr[i].key, key)) return &root->ptr[i].value;
    return NULL;
}

static void put_str(pair_t *p, const char *key, const char *value) {
    str_set(&p->key, key);
    p->value.tag = WASP_ESP_TYPES_VALUE_STR;
    str_set(&p->value.val.str, value);
}

static void put_int(pair_t *p, const char *key, int64_t value) {
    str_set(&p->key, key);
    p->value.tag = WASP_ESP_TYPES_VALUE_INT;
    p->value.val.int_ = value;
}

static bool validate(const exports_wasp_esp_service_request_t *req,
                     exports_wasp_esp_service_kv_list_t *ret,
                     exports_wasp_esp_service_fault_t *err) {
    const value_t *v = param(req, "TicketNumber");
    if (!v) {
        fault(err, 2, "missing parameter 'TicketNumber'");
        return false;
    }
    if (v->tag != WASP_ESP_TYPES_VALUE_STR) {
        fault(err, 2, "parameter 'TicketNumber' must be a string");
        return false;
    }
    const char *text = (const char *)v->val.str.ptr;
    size_t len = v->val.str.len;
    int shown = len > 40 ? 40 : (int)len; /* keep messages short */
    char message[160];
    struct ticket t;
    switch (ticket_parse(text, len, &t)) {
    case TICKET_OK:
        break;
    case TICKET_MALFORMED:
        snprintf(message, sizeof message,
                 "'%.*s' is not a ticket number: expected KIND-YYYY-NNNNNC, e.g. INC-2024-000123",
                 shown, text);
        fault(err, 3, message);
        return false;
    case TICKET_UNKNOWN_KIND:
        snprintf(message, sizeof message,
                 "unknown ticket kind '%.3s': expected INC, REQ, CHG or PRB", text);
        fault(err, 4, message);
        return false;
    case TICKET_BAD_YEAR:
        snprintf(message, sizeof message, "year %.4s of '%.*s' is outside 2000-2099", text + 4,
                 shown, text);
        fault(err, 5, message);
        return false;
    }

    int valid = t.check_digit == t.expected_digit;
    size_t n = valid ? 4 : 5;
    pair_t *root = calloc(n, sizeof(pair_t));
    put_int(&root[0], "Valid", valid);
    put_str(&root[1], "Kind", t.kind);
    put_int(&root[2], "Year", t.year);
    put_int(&root[3], "Serial", t.serial);
    if (!valid) {
        snprintf(message, sizeof message, "check digit is %d, expected %d", t.check_digit,
                 t.expected_digit);
        put_str(&root[4], "Reason", message);
    }
    ret->lists.len = 1;
    ret->lists.ptr = malloc(sizeof(wasp_esp_types_list_pair_t));
    ret->lists.ptr[0].ptr = root;
    ret->lists.ptr[0].len = n;
    log_line(WASP_ESP_LOG_LEVEL_DEBUG, "ticket validated", "valid", valid ? "1" : "0");
    return true;
}

bool exports_wasp_esp_service_handle(exports_wasp_esp_service_request_t *req,
                                     exports_wasp_esp_service_kv_list_t *ret,
                                     exports_wasp_esp_service_fault_t *err) {
    bool ok;
    if (str_eq(&req->method, "Validate")) {
        ok = validate(req, ret, err);
    } else {
        char message[96];
        snprintf(message, sizeof message, "unknown method '%.*s'",
                 req->method.len > 40 ? 40 : (int)req->method.len, (const char *)req->method.ptr);
        fault(err, 1, message);
        ok = false;
    }
    /* Arguments of an export belong to the callee. */
    exports_wasp_esp_service_request_free(req);
    return ok;
}
