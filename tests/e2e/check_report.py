"""The e2e script tests' way of reporting: `ok`/`fail` print one line per check, and FAILURES
collects the failed ones, which the script turns into its exit status at the end.

  from check_report import FAILURES, check, fail, ok
"""

FAILURES = []


def ok(what):
    print(f"ok: {what}")


def fail(what):
    print(f"FAIL: {what}")
    FAILURES.append(what)


def check(cond, what):
    (ok if cond else fail)(what)
    return cond
