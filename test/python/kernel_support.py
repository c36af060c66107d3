"""Helpers shared by the real-client suites: start the kernel, run cells, collect their messages."""
import os
import time
import unittest
from queue import Empty

import zmq
from jupyter_client.manager import start_new_kernel
from jupyter_client.session import Session

KERNEL_NAME = os.environ.get("STREAMBOOK_KERNEL_NAME", "streambook")
TIMEOUT = float(os.environ.get("STREAMBOOK_TEST_TIMEOUT", "60"))


def start_kernel():
    return start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=TIMEOUT)


def stop_kernel(km, kc):
    kc.stop_channels()
    km.shutdown_kernel(now=False)


def address(km, port_name):
    info = km.get_connection_info()
    return "%s://%s:%d" % (info["transport"], info["ip"], info[port_name])


def raw_socket(km, port_name, kind=zmq.DEALER):
    """A socket of our own on one kernel port, for messages jupyter_client would never send."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    sock.connect(address(km, port_name))
    return sock


def foreign_session(key):
    return Session(key=key, signature_scheme="hmac-sha256")


def drain_iopub(kc):
    while True:
        try:
            kc.get_iopub_msg(timeout=0.2)
        except Empty:
            return


class Collected:
    def __init__(self, reply, iopub, others):
        self.reply = reply
        self.iopub = iopub
        self.others = others  # iopub messages of other requests seen meanwhile

    @property
    def status(self):
        return self.reply["content"]["status"]

    def of_type(self, msg_type):
        return [m for m in self.iopub if m["msg_type"] == msg_type]

    def stdout(self):
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout")

    def result_text(self):
        results = self.of_type("execute_result")
        return results[0]["content"]["data"].get("text/plain") if results else None


def collect(kc, msg_id, timeout=TIMEOUT, reply=None):
    """The reply to msg_id (unless already received) and the iopub messages parented to it, up to its idle status."""
    deadline = time.time() + timeout
    while reply is None:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") == msg_id:
            reply = msg
    iopub, others = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        if msg["parent_header"].get("msg_id") != msg_id:
            others.append(msg)
            continue
        iopub.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return Collected(reply, iopub, others)


def run(kc, code, timeout=TIMEOUT, **kwargs):
    return collect(kc, kc.execute(code, **kwargs), timeout)


class KernelTestCase(unittest.TestCase):
    """One kernel for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = start_kernel()

    @classmethod
    def tearDownClass(cls):
        stop_kernel(cls.km, cls.kc)

    def setUp(self):
        drain_iopub(self.kc)

    def assertOk(self, collected):
        self.assertEqual(collected.status, "ok", collected.reply["content"])
