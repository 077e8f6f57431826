"""Helpers for the tests' Python: clients, the control client, and
writes left in flight while the test does something else.

A test puts $srcdir in PYTHONPATH to import it.
"""
import subprocess

import nbd


def connect(uri):
    """A client connected to @uri."""
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def ctl_runner(sock, ctl):
    """A function running the control client @ctl on @sock with its
    arguments, raising if the command fails."""
    def run(*args):
        subprocess.check_call([ctl, "-s", sock] + list(args))
    return run


def start_write(h, data, offset):
    """Send a write of @data at @offset on @h without waiting for it;
    return its cookie for finish()."""
    cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), offset)
    h.poll(0)
    return cookie


def finish(h, cookie):
    """Wait for the command @cookie on @h: True if it succeeded, False if
    the server failed it."""
    try:
        while not h.aio_command_completed(cookie):
            h.poll(-1)
        return True
    except nbd.Error:
        return False
