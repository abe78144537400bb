"""What a test suite needs of the implementation through the harness: modules that behave as
modules, classes as classes, exceptions as exceptions, and the values a test passes (iterators,
generators, ranges, lambdas, classes, slices, objects of its own) as capabilities. Real worker
process, real import hook; no Docker (the sandbox tests cover the users and the container)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness_session import Session

PKG = {
    "pkg/__init__.py": '''
        """The package's docstring."""
        from .core import *
        from .core import _private_helper
        VERSION = (1, 2)
    ''',
    "pkg/core.py": '''
        """Core."""
        import itertools, warnings
        __all__ = ["LIMIT", "Box", "BoxError", "chunked", "apply", "first", "consume", "groups",
                   "Registry", "Meta", "shout", "Base", "warn_me", "REGISTRY", "exits", "take_all",
                   "fill", "Memo", "Wrapper", "store", "locked", "ZONE", "Sized", "params",
                   "unwrapped", "default_of", "Abort", "abort", "through", "Keeper", "suppress",
                   "block", "unblock"]
        LIMIT = 3
        REGISTRY = set()
        class BoxError(ValueError):
            """A box went wrong."""
            def __init__(self, msg, code=7):
                super().__init__(msg)
                self.code = code
        class Box:
            """Holds items."""
            KIND = "box"
            def __init__(self, items): self.items = list(items)
            def __len__(self): return len(self.items)
            def __getitem__(self, i): return self.items[i]
            def __contains__(self, x): return x in self.items
            def __iter__(self): return iter(self.items)
            def __reversed__(self): return reversed(self.items)
            def __eq__(self, other): return isinstance(other, Box) and other.items == self.items
            def __hash__(self): return hash(tuple(self.items))
            def __repr__(self): return f"Box({self.items!r})"
            def __enter__(self): return self
            def __exit__(self, *exc): return True  # swallows everything, if it may
            def __class_getitem__(cls, item): return f"Box of {item.__name__}"
            def total(self): return sum(self.items)
            @classmethod
            def of(cls, *items): return cls(items)
            def fail(self): raise BoxError("no", code=3)
        def chunked(iterable, n):
            it = iter(iterable)
            while chunk := list(itertools.islice(it, n)):
                yield chunk
        def apply(fn, *args, **kwargs): return fn(*args, **kwargs)
        def first(iterable): return next(iter(iterable))
        def consume(iterator, n):
            for _ in range(n):
                next(iterator)
        def groups(data): return ((k, g) for k, g in itertools.groupby(data))
        def take_all(iterable): return list(iterable)
        class Registry(dict):
            pass
        import abc
        class Sized(abc.ABC):
            @abc.abstractmethod
            def __len__(self): ...
            def twice(self): return 2 * len(self)
        class Meta(type):
            def __iter__(cls): return iter(["a", "b"])
        class Base:
            def __init__(self, n): self.n = n
            def describe(self): return f"{self.name()}:{self.n}"
            def name(self): return "base"
        def shout(text): return text.upper()
        def fill(items, n): items.extend(range(n))
        class Memo:
            """Keeps the dict it is given, as cachetools' decorators do."""
            def __init__(self, cache, key=None): self.cache, self.key = cache, key
            def __call__(self, x):
                k = self.key(x) if self.key else x
                if k not in self.cache:
                    self.cache[k] = x * 2
                return self.cache[k]
            @staticmethod
            def size(value): return 1
        class Wrapper:
            def __init__(self, fn):
                import functools
                functools.update_wrapper(self, fn)
            def __call__(self, /, **kwargs): return self.__wrapped__(**kwargs)
        def store(obj, key, value): obj[key] = value
        class Keeper:
            def __init__(self, items): self.items = items
            def show(self): return repr(self.items)
        import threading
        _GATE = threading.Event()
        def block(): return _GATE.wait(20)
        def unblock(): _GATE.set()
        def suppress(iterable):
            try:
                yield from iterable
            except ValueError:
                return
        def locked(lock):
            with lock:
                return lock.locked()
        from datetime import timedelta, tzinfo
        class Zone(tzinfo):
            def utcoffset(self, dt): return timedelta(hours=-5)
            def dst(self, dt): return timedelta(0)
            def tzname(self, dt): return "EST"
        ZONE = Zone()
        def warn_me(): warnings.warn("old", DeprecationWarning); return 1
        def exits(code): raise SystemExit(code)
        def _private_helper(): return "private"
        def params(fn):
            import inspect
            return [(p.name, p.kind.name, repr(p.default)) for p in inspect.signature(fn).parameters.values()]
        def unwrapped(fn):
            import inspect
            return inspect.unwrap(fn)
        def default_of(fn, name):
            import inspect
            return inspect.signature(fn).parameters[name].default
        class Abort(BaseException):
            """Ends a callback loop, as more_itertools' AbortThread does."""
        def abort(): raise Abort("stop")
        def through(callback, arg):
            try:
                callback(arg)
            except (Abort, BoxError) as e:
                return type(e).__name__, e.args, getattr(e, "code", None)
            return "not caught"
    ''',
}


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path, PKG)
    yield s
    s.close()


def check(session: Session, code: str) -> str:
    done = session.run(code)
    assert done.returncode == 0, done.stdout + done.stderr + session.candidate_log()
    return done.stdout


def test_a_stand_in_module_behaves_as_a_module(session: Session) -> None:
    out = check(
        session,
        """
        import pkg, inspect
        from pkg import *
        assert LIMIT == 3 and Box.KIND == "box" and pkg.VERSION == (1, 2)
        assert "chunked" in dir(pkg) and pkg.core.__all__[0] == "LIMIT" and "Box" in pkg.core.__all__ and not hasattr(pkg, "__all__")
        assert pkg.__name__ == "pkg" and pkg.__file__.endswith("trusted/pkg/__init__.py")
        assert pkg.__doc__ == "The package's docstring." and pkg.Box.__doc__ == "Holds items."
        assert pkg.chunked is pkg.core.chunked and pkg._private_helper() == "private"
        assert inspect.isfunction(pkg.shout) and pkg.shout.__name__ == "shout"
        assert str(inspect.signature(pkg.apply)) == "(fn, *args, **kwargs)"
        assert "def chunked" in open("pkg/core.py").read()  # the implementation's files, as data
        print("ok")
    """,
    )
    assert out.strip() == "ok"


def test_classes_exceptions_and_isinstance_work_on_the_trusted_side(session: Session) -> None:
    check(
        session,
        """
        import pkg, pytest
        box = pkg.Box.of(1, 2, 3)
        assert isinstance(box, pkg.Box) and issubclass(pkg.BoxError, ValueError)
        assert box.total() == 6 and len(box) == 3 and box[1] == 2 and box[0:2] == [1, 2]
        assert 2 in box and list(box) == [1, 2, 3] and list(reversed(box)) == [3, 2, 1]
        assert box == pkg.Box([1, 2, 3]) and box != pkg.Box([1]) and hash(box) == hash((1, 2, 3))
        assert repr(box) == "Box([1, 2, 3])" and bool(box)
        assert pkg.Box[int] == "Box of int"
        with pytest.raises(pkg.BoxError) as caught:
            box.fail()
        assert caught.value.code == 3 and caught.value.args == ("no",) and str(caught.value) == "no"
        with pytest.raises(ValueError, match="no"):
            box.fail()
        try:
            pkg.first([])
        except StopIteration as e:
            assert type(e) is StopIteration
        with pytest.raises(KeyError) as k:
            pkg.apply({}.__getitem__, "x")
        assert type(k.value) is KeyError and k.value.args == ("x",)
        with pytest.raises(SystemExit) as ex:
            pkg.exits(4)
        assert ex.value.code == 4
        with pytest.deprecated_call():
            assert pkg.warn_me() == 1
        assert list(pkg.Meta("X", (), {})) == ["a", "b"]
    """,
    )


def test_values_a_test_passes_cross_as_capabilities(session: Session) -> None:
    check(
        session,
        """
        import pkg, operator
        from functools import partial
        def gen():
            yield from (3, 1, 2)
        class Mine:
            size = 5
            def grow(self, k): return self.size + k
        assert list(pkg.chunked(gen(), 2)) == [[3, 1], [2]]
        assert list(pkg.chunked(iter([1, 2, 3]), 2)) == [[1, 2], [3]]
        assert list(pkg.chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
        assert list(pkg.chunked(map(str, [1, 2]), 1)) == [["1"], ["2"]]
        assert list(pkg.chunked(filter(None, [0, 1, 2]), 5)) == [[1, 2]]
        assert list(pkg.chunked(zip("ab", "cd"), 1)) == [[("a", "c")], [("b", "d")]]
        assert pkg.apply(lambda x, y=1: x * y, 3, y=4) == 12
        assert pkg.apply(sorted, [3, 1], key=lambda v: -v) == [3, 1]
        assert pkg.apply(partial(operator.add, 1), 2) == 3
        assert pkg.apply(Mine().grow, 1) == 6 and pkg.apply(Mine).grow(2) == 7
        assert pkg.apply(lambda s: s, slice(1, 3)) == slice(1, 3)
        assert pkg.apply(str.upper, "x") == "X" and pkg.apply(len, [1]) == 1
        seen = []
        pkg.apply(lambda: seen.append(1))
        assert seen == [1]
    """,
    )


def test_laziness_holds_where_the_test_can_see_it(session: Session) -> None:
    check(
        session,
        """
        import pkg
        pulled = []
        def numbers():
            for i in range(10):
                pulled.append(i)
                yield i
        it = numbers()
        pkg.consume(it, 3)
        assert pulled == [0, 1, 2] and next(it) == 3   # nothing read ahead of the test's generator
        shared = iter(range(10))
        pkg.consume(shared, 2)
        assert next(shared) == 2                        # a held iterator advances exactly so far
        groups = list(pkg.groups("aabbb"))              # groupby's groups share the generator's state
        assert [k for k, _ in groups] == ["a", "b"]
        fresh = [(k, list(g)) for k, g in pkg.groups("aab")]
        assert fresh == [("a", ["a", "a"]), ("b", ["b"])]
        made = pkg.chunked(range(4), 1)
        assert next(made) == [0]
        assert pkg.take_all(made) == [[1], [2], [3]]    # what was read ahead goes back with it
    """,
    )


def test_a_module_attribute_is_the_candidates_state(session: Session) -> None:
    check(
        session,
        """
        import pkg
        pkg.REGISTRY.add("x")   # an attribute read here is the candidate's own set, not a copy
        assert "x" in pkg.REGISTRY and pkg.apply(sorted, pkg.REGISTRY) == ["x"]
        reg = pkg.Registry(a=1)
        assert reg["a"] == 1 and reg.get("b", 2) == 2
    """,
    )


def test_a_trusted_subclass_of_a_candidate_class(session: Session) -> None:
    check(
        session,
        """
        import pkg
        class Mine(pkg.Base):
            def name(self):
                return "mine"
            def describe(self):
                return "<" + super().describe() + ">"
        m = Mine(4)
        assert isinstance(m, Mine) and isinstance(m, pkg.Base)
        assert m.describe() == "<mine:4>"   # the candidate's describe() calls our name()
        assert m.n == 4
    """,
    )


def test_the_shared_random_stream_after_a_seed(session: Session) -> None:
    check(
        session,
        """
        import random, pkg
        random.seed(7)
        mine = [random.random() for _ in range(2)]
        random.seed(7)
        theirs = [pkg.apply(random.random) for _ in range(2)]
        assert mine == theirs, (mine, theirs)
    """,
    )


def test_a_list_or_dict_the_test_passes_is_the_one_the_candidate_changes(session: Session) -> None:
    """Filled in place, kept as an object's cache, cleared by the test, handed back: one container,
    as in one process (a copy would leave the test's empty)."""
    check(
        session,
        """
        import pkg
        items = []
        pkg.fill(items, 3)
        assert items == [0, 1, 2]
        cache = {}
        memo = pkg.Memo(cache)
        assert memo(4) == 8 and cache == {4: 8}
        assert memo.cache is cache              # handed back: the test's own dict
        cache.clear()                           # the test changes it: the candidate sees it
        assert memo(5) == 10 and cache == {5: 10}
        cache[6] = "mine"
        assert memo(6) == "mine"
        big = list(range(20_000))               # past the limit: a copy, as any plain data
        pkg.fill(big, 1)
        assert len(big) == 20_000
        nested = {"inner": []}
        pkg.store(nested, "k", 1)
        assert nested == {"inner": [], "k": 1}
    """,
    )


def test_every_change_to_a_shared_container_reaches_the_candidate(session: Session) -> None:
    """Items replaced by equal values of another type (1, 1.0, True), tuples, nested lists."""
    check(
        session,
        """
        import pkg
        items = [1, (2, 3), "x", b"y", None]
        keeper = pkg.Keeper(items)
        assert keeper.show() == "[1, (2, 3), 'x', b'y', None]"
        items[0] = 1.0
        assert keeper.show() == "[1.0, (2, 3), 'x', b'y', None]", keeper.show()
        items[0] = True
        items[1] = (2, 3.0)
        assert keeper.show() == "[True, (2, 3.0), 'x', b'y', None]", keeper.show()
        items.append([4])
        items[-1].append(5)
        assert keeper.show() == "[True, (2, 3.0), 'x', b'y', None, [4, 5]]", keeper.show()
        table = {"a": 1, ("b", 2): 0}
        other = pkg.Keeper(table)
        table["a"] = True
        assert other.show() == "{'a': True, ('b', 2): 0}", other.show()
        blob = bytearray(b"ab")
        third = pkg.Keeper(blob)
        blob[0] = ord("z")
        assert third.show() == "bytearray(b'zb')", third.show()
    """,
    )


def test_what_frames_a_session_is_never_kept_as_a_shared_container(session: Session) -> None:
    """A test's iterator that fails under the candidate: the batch of values and the error that
    answered the candidate's `next` stay in no registry (each would be compared at every message
    for the rest of the suite, a cost that grew with every such test)."""
    check(
        session,
        """
        import pkg
        from autoresearch_harness import session
        class Producer:
            def __init__(self): self.n = 0
            def __iter__(self): return self
            def __next__(self):
                self.n += 1
                if self.n > 3:
                    raise ValueError("no more")
                return self.n
        for _ in range(5):
            assert list(pkg.suppress(Producer())) == [1, 2, 3]
        pkg.shout("x")
        assert not session.connection().shared.live
    """,
    )


def test_the_tests_threads_call_the_candidate_at_once(session: Session) -> None:
    """One thread's call waits for another's (served at once, not in turn), and many threads'
    calls with callbacks nested in them each get their own answers."""
    check(
        session,
        """
        import pkg, threading
        blocked = []
        waiter = threading.Thread(target=lambda: blocked.append(pkg.block()))
        waiter.start()
        pkg.unblock()
        waiter.join()
        assert blocked == [True], blocked

        answers, errors = {}, []
        def work(k):
            try:
                for i in range(40):
                    got = pkg.apply(lambda x: pkg.shout(x) + str(k), f"t{i}-")
                    assert got == f"T{i}-{k}", got
                answers[k] = got
            except BaseException as e:
                errors.append(repr(e))
        threads = [threading.Thread(target=work, args=(k,)) for k in range(12)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors and len(answers) == 12, (errors, answers)
    """,
    )


def test_a_class_statement_with_the_candidates_metaclass_is_made_here(session: Session) -> None:
    check(
        session,
        """
        import pkg
        class Three(pkg.Sized):                 # the candidate's class's metaclass is abc.ABCMeta
            def __len__(self): return 3
        assert Three.__module__ == "__main__" and Three.__qualname__ == "Three"
        three = Three()
        assert len(three) == 3 and three.twice() == 6 and isinstance(three, pkg.Sized)
        assert list(pkg.Meta("X", (), {})) == ["a", "b"]   # called directly: the candidate's class
    """,
    )


def test_wrappers_keywords_statics_locks_and_zones(session: Session) -> None:
    check(
        session,
        """
        import pkg, threading, datetime
        def f(**kwargs):
            "The docstring of f."
            return kwargs
        w = pkg.Wrapper(f)
        assert w.__wrapped__ is f and w.__name__ == "f"
        assert w.__doc__ == "The docstring of f."              # functools.wraps copied it there
        assert w(self=1) == {"self": 1}                         # `self` is the caller's keyword
        size = lambda v: 7
        memo = pkg.Memo({}, key=str)
        assert pkg.Memo.size(1) == 1 and memo.size(1) == 1
        memo.size = size                                        # an object's own attribute first
        assert memo.size is size
        assert pkg.locked(threading.Lock()) is True             # a test's lock, used by the candidate
        class Registry:
            def __init__(self): self.data = {}
            def __setitem__(self, k, v): self.data[k] = v
        reg = Registry()
        pkg.store(reg, "a", 1)                                  # the test's own class: filled
        assert reg.data == {"a": 1}
        assert pkg.apply(lambda x: x.__doc__, reg) is None      # an object's: none served
        when = datetime.datetime(2020, 1, 1, 12, tzinfo=pkg.ZONE)
        assert isinstance(pkg.ZONE, datetime.tzinfo) and when.utcoffset() == datetime.timedelta(hours=-5)
        assert pkg.apply(lambda d: d.tzname(), when) == "EST"
    """,
    )


def test_the_candidate_reads_a_test_functions_signature_but_never_gets_its_objects(
    session: Session,
) -> None:
    """What decorator and CLI libraries ask of a function (inspect.signature, inspect.unwrap,
    hasattr of what functools.wraps copies) works on a test's function: its parameters' names
    and kinds. Its defaults are shown, never handed over (a checker may bind the answer it
    expects; the candidate cannot change a test's own dict through one either)."""
    check(
        session,
        """
        import functools, pkg
        SEEN = {}
        def f(a, b=2, *rest, c, d="x", seen=SEEN, **kw): return seen
        hidden = "<a default of the trusted side>"
        empty = "<class 'inspect._empty'>"
        assert pkg.params(f) == [
            ("a", "POSITIONAL_OR_KEYWORD", empty), ("b", "POSITIONAL_OR_KEYWORD", hidden),
            ("rest", "VAR_POSITIONAL", empty), ("c", "KEYWORD_ONLY", empty),
            ("d", "KEYWORD_ONLY", hidden), ("seen", "KEYWORD_ONLY", hidden),
            ("kw", "VAR_KEYWORD", empty)]
        class K:
            def m(self, z): pass
        assert [p[0] for p in pkg.params(K().m)] == ["z"]
        assert pkg.unwrapped(f) is f                               # nothing wraps it: itself
        assert [p[0] for p in pkg.params(functools.partial(f, 1))][0] == "b"
        default = pkg.default_of(f, "seen")
        assert pkg.apply(repr, default) == hidden
        try:
            pkg.store(default, "planted", 1)                        # not the test's dict
        except TypeError:
            pass
        assert SEEN == {} and f(1, c=3) is SEEN
        assert pkg.apply(lambda fn: hasattr(fn, "__qualname__"), functools.partial(f, 1)) is False
    """,
    )


def test_the_candidates_exception_comes_back_to_it_through_a_tests_callback(
    session: Session,
) -> None:
    """Candidate code calls a test's callback, which calls candidate code that raises: the
    candidate's own `except` catches its own exception (a BaseException one too), as itself."""
    check(
        session,
        """
        import pkg
        assert pkg.through(lambda fn: fn(), pkg.abort) == ("Abort", ("stop",), None)
        assert pkg.through(lambda box: box.fail(), pkg.Box([1])) == ("BoxError", ("no",), 3)
        try:
            pkg.abort()
        except pkg.Abort as e:                                  # and the test catches it too
            assert e.args == ("stop",) and not isinstance(e, Exception)
    """,
    )
