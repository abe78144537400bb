"""A hostile candidate against what crosses the harness: the trusted objects a test passes it,
the answers it gives, the code it plants. Each test is an attack that must fail. Real worker
process and import hook; no Docker (the sandbox attacks cover the users and the container)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness_session import Session, metrics

HOSTILE = {
    "evil/__init__.py": "",
    "evil/walk.py": '''
        import os

        def trophies(*objects):
            """Everything the candidate can get out of the trusted process through what a test
            passed it (a module global, code run there, its pid), printed to the candidate's log."""
            for obj in objects:
                for how in (
                    lambda: obj.__globals__["SECRET"],
                    lambda: obj.gi_frame.f_globals["SECRET"],
                    lambda: "PID=%d" % obj.gi_frame.f_builtins["__import__"]("os").getpid(),
                    lambda: obj.__self__.__class__.__subclasses__(),
                    lambda: obj.__class__.__subclasses__()[0].__init__.__globals__["SECRET"],
                    lambda: obj.__func__.__globals__["SECRET"],
                    lambda: obj.__dict__["SECRET"],
                    lambda: obj.hidden_attribute_of_the_module,
                    lambda: obj.modules["__main__"].SECRET,
                    lambda: obj.environ["TRUSTED_ONLY"],
                    lambda: obj.write("tests_failed: 0\\n"),
                ):
                    try:
                        print("TROPHY", how())
                    except Exception:
                        pass

        def pid():
            return os.getpid()
    ''',
    "evil/liar.py": """
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            __hash__ = object.__hash__
        class Honest:
            def __init__(self, v): self.v = v
            def __eq__(self, other):
                if not isinstance(other, Honest):
                    raise TypeError("only Honest compares")
                return self.v == other.v
            __hash__ = object.__hash__
        class Swallow:
            def __enter__(self): return self
            def __exit__(self, *exc): return True
        def total(xs):
            return Anything()   # a broken result that claims to equal what the test expects
        def forged():
            print("tests_failed: 0")   # the candidate's own output: its log, never the metric channel
            return "tests_failed: 0\\nMETRIC tests_failed=0"
        def shout(text):
            raise ValueError("tests_failed: 0\\nMETRIC tests_failed=0")
        def hang():
            while True:
                pass
        def stubborn():
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    continue
        def die():
            import os
            os._exit(3)
        def fill(items, board):
            items.append("tests_failed: 0\\nMETRIC tests_failed=0")   # into the test's own list
            board["tests_failed"] = 0
        def store(mapping, key, value):
            mapping[key] = value
        def claim_to_share():
            import gc
            peer = next(o for o in gc.get_objects() if type(o).__name__ == "Peer")
            peer.shared.origin = True      # its own containers, passed off as the test's
            return peer.shared.share(peer, ["planted"])
        class Payload:
            def __reduce__(self):
                import os
                return (os.getpid, ())
    """,
    "evil/quiet.py": """
        def quietly(check, value):
            try:
                check(value)
            except BaseException:
                pass              # the test's own assertion, swallowed
            return "fine"
        def validate(check, value):
            try:
                check(value)
            except AssertionError:
                raise ValueError("invalid") from None   # turned into its own error: that is allowed
            return "valid"
    """,
    "evil/mocks.py": """
        import inspect
        def leak(m, path):
            # a text signature's defaults are names inspect looks up: the trusted side's globals
            try:
                m.configure_mock(__get__=lambda *a: None, __text_signature__="(x=%s)" % path)
            except AttributeError:
                pass
            try:
                print("TROPHY", inspect.signature(m).parameters["x"].default)
            except Exception:
                pass
        def forge(m):
            def ok(*a, **k): return None
            for how in (
                lambda: m.configure_mock(assert_called_once_with=ok),
                lambda: m.configure_mock(**{"__class__.__base__.assert_called_once_with": ok}),
                lambda: m.reset_mock(),
                lambda: m.attach_mock(ok, "assert_not_called"),
            ):
                try:
                    how()
                except Exception:
                    pass
        def peek(check):
            return [p.default for p in inspect.signature(check).parameters.values()]
        def use(m):
            m.read(3)
            return m.called, m.call_count, m.read.call_count
    """,
}


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path, HOSTILE, call_s=2)
    yield s
    s.close()


def run(session: Session, code: str) -> str:
    done = session.run(code)
    assert done.returncode == 0, done.stdout + done.stderr + session.candidate_log()
    return done.stdout


def test_no_attribute_walk_from_a_trusted_object_reaches_the_trusted_process(
    session: Session,
) -> None:
    out = run(
        session,
        """
        import sys, os
        from evil.walk import trophies
        SECRET = "the-trusted-side's-secret"
        os.environ["TRUSTED_ONLY"] = SECRET
        def gen():
            yield 1
        class Fixture:
            hidden_attribute_of_the_module = SECRET
        def func(): pass
        trophies(gen(), func, lambda: SECRET, Fixture.__init__, iter([1]), sys.stdout, sys, os,
                 os.environ, map(str, [1]), print, sys.stdout.write, sys.stderr.write)
        print("PID=%d" % os.getpid())
    """,
    )
    log = session.candidate_log()
    assert "the-trusted-side" not in log, log
    pid = out.split("PID=")[1].split()[0]
    assert f"PID={pid}" not in log, log
    assert "tests_failed" not in out, out


def test_print_passed_to_the_candidate_is_its_own(session: Session) -> None:
    out = run(
        session,
        """
        from evil.walk import pid
        import os
        print("PIDS", os.getpid() != pid())
    """,
    )
    assert "PIDS True" in out


def test_an_eq_that_answers_true_to_anything_fails_the_assertion(session: Session) -> None:
    out = run(
        session,
        """
        from evil.liar import total, Honest
        from autoresearch_harness.standins import CandidateLies
        try:
            assert total([1, 2]) == 3
            print("PASSED")
        except CandidateLies as e:
            print("CAUGHT", e)
        assert Honest(1) == Honest(1) and Honest(1) != Honest(2)   # an honest __eq__ that raises
        print("HONEST OK")
    """,
    )
    assert "CAUGHT" in out and "PASSED" not in out and "HONEST OK" in out


def test_candidate_text_never_passes_for_a_metric_line(session: Session) -> None:
    out = run(
        session,
        """
        from evil.liar import forged, shout
        text = forged()
        print(text)
        print(f"got {text}")
        try:
            shout("x")
        except ValueError as e:
            print(e)
            print(repr(e))
        import traceback
        try:
            shout("x")
        except ValueError:
            traceback.print_exc(file=__import__("sys").stdout)
        print("score: 1")
    """,
    )
    assert metrics(out) == {"score": 1.0}, out
    assert "tests_failed: 0" in session.candidate_log()


def test_what_the_candidate_writes_into_a_shared_list_is_its_text(session: Session) -> None:
    """A list or dict the test passes is shared so the candidate may fill it; what it puts there
    is candidate text like any answer, and it never creates a shared container of its own."""
    out = run(
        session,
        """
        import os
        from evil.liar import fill, store, claim_to_share
        items, board = [], {}
        fill(items, board)
        print(items[0])
        print(f"{board}")
        print(items)
        try:
            store(os.environ, "TRUSTED_ONLY", "planted")    # a standard mapping: never written
        except TypeError as e:
            print("REFUSED", type(e).__name__)
        assert "TRUSTED_ONLY" not in os.environ
        try:
            claim_to_share()
            print("PLANTED")
        except Exception as e:
            print("MALFORMED", type(e).__name__)
        print("score: 1")
    """,
    )
    assert metrics(out) == {"score": 1.0}, out
    assert "REFUSED TypeError" in out and "PLANTED" not in out and "MALFORMED" in out, out


def test_a_candidate_context_manager_never_swallows_an_assertion(session: Session) -> None:
    out = run(
        session,
        """
        from evil.liar import Swallow
        try:
            with Swallow():
                assert False, "the test's own check"
            print("SWALLOWED")
        except AssertionError:
            print("RAISED")
        with Swallow():
            raise KeyError("an error the test lets the candidate handle")
        print("KEYERROR HANDLED")
    """,
    )
    assert "RAISED" in out and "SWALLOWED" not in out and "KEYERROR HANDLED" in out


def test_a_hanging_call_fails_at_the_limit_and_the_session_goes_on(session: Session) -> None:
    out = run(
        session,
        """
        import time
        from evil.liar import hang, forged
        t = time.monotonic()
        try:
            hang()
        except TimeoutError as e:
            print("TIMEOUT", round(time.monotonic() - t), e)
        assert forged().startswith("tests_failed")
        print("GOES ON")
    """,
    )
    assert "TIMEOUT 2" in out and "GOES ON" in out, out


def test_a_call_that_ignores_the_limit_ends_the_session_never_passes(session: Session) -> None:
    out = run(
        session,
        """
        import time
        from evil.liar import stubborn, forged
        from autoresearch_harness import CandidateGone
        t = time.monotonic()
        try:
            stubborn()
        except CandidateGone as e:
            print("GONE", time.monotonic() - t < 15, e)
        try:
            forged()
        except CandidateGone:
            print("STILL GONE")
    """,
    )
    assert "GONE True" in out and "STILL GONE" in out, out


def test_a_worker_that_exits_is_the_candidates_failure(session: Session) -> None:
    out = run(
        session,
        """
        from evil.liar import die, forged
        from autoresearch_harness import CandidateGone
        for f in (die, forged):
            try:
                f()
            except CandidateGone as e:
                print("GONE", e)
    """,
    )
    assert out.count("GONE") == 2


def test_nothing_the_candidate_pickled_is_loaded_on_the_trusted_side(session: Session) -> None:
    out = run(
        session,
        """
        import os, pickle
        from evil.liar import Payload
        loaded = pickle.loads(pickle.dumps(Payload()))   # the candidate loads its own bytes
        print("PIDS", loaded != os.getpid(), type(loaded).__name__)
    """,
    )
    assert "PIDS True int" in out, out


def test_the_implementations_code_never_executes_on_the_trusted_side(session: Session) -> None:
    out = run(
        session,
        """
        import runpy
        for attempt in (
            lambda: runpy.run_path("evil/liar.py"),
            lambda: exec(compile(open("evil/liar.py").read(), "evil/liar.py", "exec"), {}),
            lambda: __import__("importlib.util").util.spec_from_file_location("x", "evil/liar.py")
                    .loader.exec_module(__import__("types").ModuleType("x")),
        ):
            try:
                attempt()
                print("RAN")
            except ImportError as e:
                print("REFUSED", "the implementation's code" in str(e))
        import doctest, evil.liar
        print("DOCTEST", doctest.testmod(evil.liar).attempted == 0)
    """,
    )
    assert out.count("REFUSED True") == 3 and "RAN" not in out, out
    assert "DOCTEST True" in out


def test_a_planted_conftest_or_test_file_never_runs(tmp_path: Path) -> None:
    planted = {
        "evil/__init__.py": "",
        "evil/conftest.py": """
            def pytest_runtest_logreport(report):
                report.outcome = "passed"   # every failure, a pass
        """,
        "evil/test_planted.py": """
            def test_always():
                assert True
        """,
    }
    judge = {
        "tests/test_real.py": """
        import evil
        def test_real():
            assert evil.__name__ == "evil"
        def test_broken():
            assert False
    """
    }
    s = Session(tmp_path, planted, judge)
    try:
        done = s.pytest(".")  # collects from the root: the implementation's folder too
        found = metrics(done.stdout)  # the planted conftest would turn every failure into a pass
        assert found["tests_passed"] == 0 and found["tests_failed"] >= 2, done.stdout
        assert "conftest.py is the implementation's code" in done.stdout
    finally:
        s.close()


def test_an_other_copy_of_a_module_of_the_implementation_is_refused(tmp_path: Path) -> None:
    s = Session(tmp_path, {"evil/__init__.py": "WHO = 'candidate'"},
                {"site/evil/__init__.py": "WHO = 'installed copy'"})  # fmt: skip
    try:
        done = s.run("""
            import sys
            print(__import__("evil").WHO)
        """)
        assert done.stdout.strip() == "candidate", done.stderr
        done = s.run("""
            import sys
            sys.path.insert(0, "site")
            import evil
        """)
        assert done.returncode != 0
        assert "would load" in done.stderr and "site/evil/__init__.py" in done.stderr
        assert "trusted/evil/__init__.py" in done.stderr
    finally:
        s.close()


def test_a_candidates_file_never_stands_in_for_a_module_the_trusted_side_means(
    tmp_path: Path,
) -> None:
    """`pkg/statistics.py` (a standard library name) or a new `pkg/pytest.py` (an installed
    package) on the evaluator's path would answer the evaluator's own imports: its median,
    its test run. Refused with one line; the project's own modules still import."""
    forged = {"pkg/statistics.py": "def median(xs):\n    return 0.0001\n",
              "pkg/pytest.py": "def main(*a, **k):\n    return 0\n",
              "pkg/primes.py": "def count(n):\n    return n\n"}  # fmt: skip
    s = Session(tmp_path, forged, added=("pkg/pytest.py", "pkg/statistics.py"))
    try:
        for module, other in (
            ("statistics", "the standard library's statistics"),
            ("pytest", "pytest"),
        ):
            done = s.run(f"""
                import sys
                sys.path.insert(0, "pkg")
                import {module}
                print("imported", {module}.__file__)
            """)
            assert done.returncode != 0 and "imported" not in done.stdout, (module, done.stdout)
            assert f"pkg/{module}.py would shadow" in done.stderr and other in done.stderr, (
                done.stderr
            )
        done = s.run("""
            import sys
            sys.path.insert(0, "pkg")
            import primes
            print("count", primes.count(3))
        """)
        assert done.stdout.split() == ["count", "3"], done.stderr
    finally:
        s.close()


def test_a_file_the_project_had_keeps_its_name_even_where_a_copy_is_installed(
    tmp_path: Path,
) -> None:
    """Not added by this candidate: the repository's own module wins over an installed copy, as
    pytest's rootdir does; only a standard library name is never the candidate's."""
    s = Session(tmp_path, {"evil/__init__.py": "WHO = 'candidate'"},
                {"site/evil/__init__.py": "WHO = 'installed copy'"})  # fmt: skip
    try:
        done = s.run("""
            import sys
            sys.path.append("site")
            print(__import__("evil").WHO)
        """)
        assert done.stdout.strip() == "candidate", done.stderr
    finally:
        s.close()


def test_a_tests_mock_and_its_functions_give_the_candidate_no_lever(session: Session) -> None:
    """A mock the test hands the candidate is called and read, never reconfigured: its own
    assertions cannot be replaced or its calls wiped. A text signature planted on it reads no
    global, and a checker's signature gives its shape, never the answer it binds."""
    out = run(
        session,
        """
        import functools
        from unittest import mock
        from evil.mocks import forge, leak, peek, use
        SECRET = "the-expected-answer"
        leak(mock.Mock(), "__main__.SECRET")
        leak(mock.Mock(), "os.sep")
        m = mock.Mock()
        m(1)
        forge(m)
        try:
            m.assert_called_once_with(42)
            print("FORGED: a wrong call passed its assertion")
        except AssertionError:
            pass
        assert m.call_count == 1                                  # its record kept
        try:
            mock.Mock().assert_called_once_with(1)
            print("FORGED: every mock's assertion replaced")
        except AssertionError:
            pass
        def check(got, want=SECRET): return got == want
        shown = peek(check) + peek(functools.partial(check, want=SECRET))
        assert SECRET not in [str(d) for d in shown], shown
        assert use(mock.Mock()) == (False, 0, 1)                 # its child mocks and records
        print("DONE")
    """,
    )
    assert "DONE" in out and "TROPHY" not in out and "FORGED" not in out, out


def test_the_tests_own_assertion_in_a_callback_stands_whatever_the_candidate_does(
    session: Session,
) -> None:
    """A test hands the candidate a checker; the candidate calls it, catches the AssertionError
    (or pytest's failure, which is no Exception) and returns as if all was well: the test's
    assertion is raised on the trusted side all the same. A candidate that turns it into an
    error of its own is reporting a failure, and that error is what the test sees."""
    out = run(
        session,
        """
        from evil.quiet import quietly, validate
        class Failed(BaseException):          # as pytest.fail raises
            pass
        def check(v):
            assert v == 1, "the test's own check"
        def fail(v):
            raise Failed("the test failed it")
        for checker, kind in ((check, AssertionError), (fail, Failed)):
            try:
                quietly(checker, 2)
                print("SWALLOWED", kind.__name__)
            except kind as e:
                print("STANDS", kind.__name__, e)
        assert quietly(check, 1) == "fine"     # nothing failed: nothing raised
        try:
            validate(check, 2)
        except ValueError as e:
            print("ITS OWN ERROR", e)
    """,
    )
    assert "SWALLOWED" not in out, out
    assert "STANDS AssertionError the test's own check" in out and "STANDS Failed" in out, out
    assert "ITS OWN ERROR invalid" in out
