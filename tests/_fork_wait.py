"""The end of a test script that forked a child (`pid`): wait for it up to `limit` seconds and
print "child exit N", or kill it and print "child hung", so that a hang fails its test instead of
hanging the suite. The script imports os and time and sets `pid` and `limit` first."""

WAIT_FOR_CHILD = """
start = time.monotonic()
while time.monotonic() - start < limit:
    finished, status = os.waitpid(pid, os.WNOHANG)
    if finished:
        print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    print("child hung", flush=True)
"""
