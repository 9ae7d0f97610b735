"""Tests of wasp_sdk natively, with stand-ins for the bindings that
componentize-py generates (run: python3 sdk/python/test_wasp_sdk.py;
scripts/test does). The components built on it are tested through the
host (host/tests/other_languages.rs, host/tests/new.rs)."""

import sys
import types
import unittest
from dataclasses import dataclass


def install_stand_ins():
    class Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value

    cpt = types.ModuleType("componentize_py_types")
    cpt.Err = Err

    @dataclass
    class Value_Int:
        value: int

    @dataclass
    class Value_Str:
        value: str

    @dataclass
    class Value_Binary:
        value: bytes

    @dataclass
    class Value_Nested:
        value: int

    @dataclass
    class Pair:
        key: str
        value: object

    @dataclass
    class KvList:
        lists: list

    @dataclass
    class Fault:
        code: int
        message: str

    @dataclass
    class ServiceInfo:
        service_type: str
        version: str
        methods: list

    @dataclass
    class Tenant:
        id: int
        name: str

    @dataclass
    class Request:
        service: str
        method: str
        version: str
        tenant: Tenant
        media_type: object
        parameters: KvList
        user_data: KvList

    t = types.ModuleType("wit_world.imports.types")
    for cls in [Value_Int, Value_Str, Value_Binary, Value_Nested, Pair, KvList, Fault, ServiceInfo, Tenant, Request]:
        setattr(t, cls.__name__, cls)

    store_data = {}
    store = types.ModuleType("wit_world.imports.store")

    def store_set(key, value):
        if not key:
            raise Err("store: keys are 1 to 1024 bytes")
        if len(store_data) >= 3:
            raise Err("store: full: max-keys-per-tenant (3) reached")
        store_data[key] = value

    store.get = store_data.get
    store.set = store_set
    store.set_with_ttl = lambda key, value, ttl: store_set(key, value)
    store.delete = lambda key: store_data.pop(key, None) is not None
    store.keys = lambda prefix: sorted(k for k in store_data if k.startswith(prefix))
    store.increment = lambda key, delta: delta
    store.compare_and_swap = lambda key, expected, new: store_data.get(key) == expected

    config = types.ModuleType("wit_world.imports.config")
    values = {"greeting": "Hi", "n": "7", "bad": "x"}
    config.get = values.get
    config.get_all = lambda: sorted(values.items())

    lines = []
    log = types.ModuleType("wit_world.imports.log")

    class Level:
        TRACE, DEBUG, INFO, WARN, ERROR = range(5)

    log.Level = Level
    log.log = lambda level, message, fields: lines.append((level, message, fields))

    exports = types.ModuleType("wit_world.exports")
    exports.Service = type("Service", (), {})

    world = types.ModuleType("wit_world")
    imports = types.ModuleType("wit_world.imports")
    world.exports, world.imports = exports, imports
    imports.types, imports.store, imports.config, imports.log = t, store, config, log
    sys.modules.update({
        "componentize_py_types": cpt,
        "wit_world": world,
        "wit_world.exports": exports,
        "wit_world.imports": imports,
        "wit_world.imports.types": t,
        "wit_world.imports.store": store,
        "wit_world.imports.config": config,
        "wit_world.imports.log": log,
    })
    return t, lines


T, LOG_LINES = install_stand_ins()
sys.path.insert(0, __file__.rsplit("/", 1)[0])
import wasp_sdk  # noqa: E402
from wasp_sdk import Fault, Kv  # noqa: E402


def arena(*lists):
    return T.KvList(lists=[list(pairs) for pairs in lists])


def request(method, params):
    return T.Request("Greeter", method, "1.0", T.Tenant(101, "Env"), None, params, arena())


class Greeter(wasp_sdk.Service):
    SERVICE_TYPE = "Greeter"
    METHODS = ["Greet"]

    def Greet(self, req):
        name = req.params.get_str("Name")
        wasp_sdk.log.info("greeting", name=name, n=1)
        return {"Greeting": f"{wasp_sdk.config.get('greeting')}, {name}!", "Tenant": req.tenant.id,
                "Nested": {"Ok": True, "Raw": b"\x00"}}


class KvTests(unittest.TestCase):
    def test_arena_round_trip_keeps_order_repeats_and_nesting(self):
        wit = arena(
            [T.Pair("A", T.Value_Int(1)), T.Pair("L", T.Value_Nested(1)), T.Pair("A", T.Value_Str("x"))],
            [T.Pair("B", T.Value_Binary(b"\x01")), T.Pair("M", T.Value_Nested(2))],
            [],
        )
        kv = Kv.from_wit(wit)
        self.assertEqual(kv.get("A"), 1)
        self.assertEqual(kv.get_list("L").get_bytes("B"), b"\x01")
        self.assertEqual(len(kv.get_list("L").get_list("M")), 0)
        self.assertEqual(kv.to_wit(), wit)
        self.assertEqual(len(Kv.from_wit(arena())), 0)

    def test_typed_getters_fault_naming_the_parameter(self):
        kv = Kv({"S": "text", "I": 5})
        self.assertEqual(kv.get_str("S"), "text")
        self.assertEqual(kv.get_int("I"), 5)
        with self.assertRaises(Fault) as f:
            kv.get_str("Missing")
        self.assertEqual((f.exception.code, f.exception.message), (1, "missing parameter 'Missing'"))
        with self.assertRaises(Fault) as f:
            kv.get_str("I")
        self.assertEqual((f.exception.code, f.exception.message),
                         (2, "parameter 'I' must be a string, not an integer"))
        with self.assertRaises(Fault) as f:
            kv.get_int("S", type_code=7)
        self.assertEqual(f.exception.code, 7)
        self.assertEqual(kv.opt_str("Missing", "d"), "d")
        with self.assertRaises(Fault):
            kv.opt_int("S")

    def test_a_value_that_is_no_kv_type_is_a_fault_naming_the_key(self):
        with self.assertRaises(Fault) as f:
            Kv({"Ratio": 0.5})
        self.assertEqual(f.exception.code, wasp_sdk.INTERNAL)
        self.assertIn("'Ratio'", f.exception.message)


class ServiceTests(unittest.TestCase):
    def test_describe_and_handle(self):
        s = Greeter()
        self.assertEqual(s.describe(), T.ServiceInfo("Greeter", "1.0", ["Greet"]))
        out = s.handle(request("Greet", arena([T.Pair("Name", T.Value_Str("Ada"))])))
        self.assertEqual(out, arena(
            [T.Pair("Greeting", T.Value_Str("Hi, Ada!")), T.Pair("Tenant", T.Value_Int(101)),
             T.Pair("Nested", T.Value_Nested(1))],
            [T.Pair("Ok", T.Value_Int(1)), T.Pair("Raw", T.Value_Binary(b"\x00"))],
        ))
        self.assertEqual(LOG_LINES[-1], (2, "greeting", [("name", "Ada"), ("n", "1")]))

    def test_a_fault_becomes_err_of_the_wit_fault(self):
        err = sys.modules["componentize_py_types"].Err
        with self.assertRaises(err) as e:
            Greeter().handle(request("Greet", arena()))
        self.assertEqual(e.exception.value, T.Fault(1, "missing parameter 'Name'"))
        with self.assertRaises(err) as e:
            Greeter().handle(request("Other", arena()))
        self.assertEqual(e.exception.value.code, wasp_sdk.UNKNOWN_METHOD)


class ImportTests(unittest.TestCase):
    def test_config(self):
        self.assertEqual(wasp_sdk.config.get("nope", "d"), "d")
        self.assertEqual(wasp_sdk.config.get_int("n"), 7)
        self.assertEqual(wasp_sdk.config.get_int("nope", 3), 3)
        with self.assertRaises(Fault) as f:
            wasp_sdk.config.get_int("bad")
        self.assertIn("config 'bad'", f.exception.message)
        self.assertEqual(wasp_sdk.config.all()["greeting"], "Hi")

    def test_store_errors_are_faults_full_is_limit_reached(self):
        store = wasp_sdk.store
        store.set("a", "one")
        self.assertEqual(store.get("a"), b"one")
        self.assertEqual(store.get_str("a"), "one")
        self.assertIsNone(store.get_str("zz"))
        with self.assertRaises(Fault) as f:
            store.set("", "x")
        self.assertEqual(f.exception.code, wasp_sdk.INTERNAL)
        store.set("b", b"2", ttl=5)
        store.set("c", "3")
        with self.assertRaises(Fault) as f:
            store.set("d", "4")
        self.assertEqual(f.exception.code, wasp_sdk.LIMIT_REACHED)
        self.assertEqual(store.keys(), ["a", "b", "c"])
        self.assertTrue(store.delete("c"))
        self.assertFalse(store.delete("c"))


if __name__ == "__main__":
    unittest.main()
