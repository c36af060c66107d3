"""jupyter_client tests of the streambook kernel: interrupt, stdin, signatures, displays,
a long session, restart, stop_on_error, and a flood of malformed messages."""
import json
import os
import random
import tempfile
import time
import unittest
from queue import Empty

import zmq

from kernel_support import (
    TIMEOUT,
    KernelTestCase,
    collect,
    drain_iopub,
    foreign_session,
    raw_socket,
    run,
    start_kernel,
    stop_kernel,
)


def js_string(text):
    return json.dumps(text)


class InterruptTests(KernelTestCase):
    def test_interrupt_synchronous_loop_keeps_variables(self):
        self.assertOk(run(self.kc, "let counter = 41;"))
        msg_id = self.kc.execute("while (true) {}")
        # Wait until the loop runs: its execute_input is published just before the cell starts.
        self.wait_for_input(msg_id)
        reply = self.interrupt_until_replied(msg_id, self.km.interrupt_kernel)  # signal mode: SIGINT to the group
        looped = collect(self.kc, msg_id, reply=reply)
        self.assertEqual(looped.status, "error")
        self.assertEqual(len(looped.of_type("error")), 1)
        after = run(self.kc, "counter + 1")
        self.assertOk(after)
        self.assertEqual(after.result_text(), "42")

    def test_interrupt_pending_await(self):
        self.assertOk(run(self.kc, "let kept = 'still here';"))
        msg_id = self.kc.execute("await new Promise(() => {});")
        self.wait_for_input(msg_id)
        reply = self.interrupt_until_replied(msg_id, self.km.interrupt_kernel)
        self.assertEqual(collect(self.kc, msg_id, reply=reply).status, "error")
        after = run(self.kc, "kept")
        self.assertOk(after)
        self.assertIn("still here", after.result_text())

    def test_interrupt_request_on_control(self):
        """Message mode: an interrupt_request on control, answered while the main thread spins."""
        msg_id = self.kc.execute("while (true) {}")
        self.wait_for_input(msg_id)
        # Heartbeat and kernel_info on control answer while user code holds the main thread.
        hb = raw_socket(self.km, "hb_port", zmq.REQ)
        try:
            hb.send(b"ping")
            self.assertTrue(hb.poll(int(TIMEOUT * 1000)), "heartbeat did not answer during a busy cell")
            self.assertEqual(hb.recv(), b"ping")
        finally:
            hb.close()
        info = self.kc.session.msg("kernel_info_request", {})
        self.kc.control_channel.send(info)
        reply = self.kc.get_control_msg(timeout=TIMEOUT)
        self.assertEqual(reply["msg_type"], "kernel_info_reply")
        self.assertEqual(reply["parent_header"]["msg_id"], info["header"]["msg_id"])

        def interrupt():
            request = self.kc.session.msg("interrupt_request", {})
            self.kc.control_channel.send(request)
            reply = self.kc.get_control_msg(timeout=TIMEOUT)
            self.assertEqual(reply["msg_type"], "interrupt_reply")
            self.assertEqual(reply["parent_header"]["msg_id"], request["header"]["msg_id"])
            self.assertEqual(reply["content"]["status"], "ok")

        reply = self.interrupt_until_replied(msg_id, interrupt)
        self.assertEqual(collect(self.kc, msg_id, reply=reply).status, "error")
        self.assertOk(run(self.kc, "1 + 1"))

    def interrupt_until_replied(self, msg_id, interrupt):
        """execute_input comes just before the cell is type-checked and run; an interrupt that lands
        before the loop starts is lost, as a user's first click would be, so press again each second."""
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            interrupt()
            while True:
                try:
                    msg = self.kc.get_shell_msg(timeout=1)
                except Empty:
                    break
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg
        self.fail("the cell was not interrupted")

    def wait_for_input(self, msg_id):
        deadline = time.time() + TIMEOUT
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                return


class StdinTests(KernelTestCase):
    def test_input_round_trip(self):
        msg_id = self.kc.execute('const answer = await input("name?");\nconsole.log("hi " + answer);', allow_stdin=True)
        request = self.kc.get_stdin_msg(timeout=TIMEOUT)
        self.assertEqual(request["msg_type"], "input_request")
        self.assertEqual(request["content"]["prompt"], "name?")
        self.assertFalse(request["content"]["password"])
        self.assertEqual(request["parent_header"]["msg_id"], msg_id)
        self.kc.input("Ada")
        done = collect(self.kc, msg_id)
        self.assertOk(done)
        self.assertIn("hi Ada", done.stdout())

    def test_input_refused_without_allow_stdin(self):
        done = run(self.kc, 'await input("name?")', allow_stdin=False)
        self.assertEqual(done.status, "error")
        self.assertIn("allow_stdin", done.reply["content"]["evalue"] + "".join(done.reply["content"]["traceback"]))


class SignatureTests(KernelTestCase):
    def setUp(self):
        super().setUp()
        fd, self.marker = tempfile.mkstemp(prefix="streambook-marker-")
        os.close(fd)
        os.unlink(self.marker)

    def tearDown(self):
        if os.path.exists(self.marker):
            os.unlink(self.marker)

    def marker_code(self):
        return 'require("node:fs").appendFileSync(%s, "x");' % js_string(self.marker)

    def test_bad_signature_is_not_executed(self):
        shell = raw_socket(self.km, "shell_port")
        try:
            forged = foreign_session(b"not-the-kernel-key")
            forged.send(shell, forged.msg("execute_request", {
                "code": self.marker_code(), "silent": False, "store_history": True,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
            }))
            # A valid request sent after the forged one on the same socket is processed after it.
            good = self.kc.session.msg("execute_request", {
                "code": "1", "silent": False, "store_history": True,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
            })
            self.kc.session.send(shell, good)
            self.assertTrue(shell.poll(int(TIMEOUT * 1000)))
            reply = self.kc.session.recv(shell, mode=0)[1]
            self.assertEqual(reply["parent_header"]["msg_id"], good["header"]["msg_id"])
            self.assertEqual(reply["content"]["status"], "ok")
            self.assertFalse(shell.poll(200), "the forged request got a reply")
        finally:
            shell.close()
        self.assertFalse(os.path.exists(self.marker), "a message with a bad signature was executed")

    def test_replayed_message_runs_once(self):
        shell = raw_socket(self.km, "shell_port")
        try:
            msg = self.kc.session.msg("execute_request", {
                "code": self.marker_code(), "silent": False, "store_history": True,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
            })
            frames = self.kc.session.serialize(msg)
            shell.send_multipart(frames)
            shell.send_multipart(frames)  # the replay
            probe = self.kc.session.msg("kernel_info_request", {})
            self.kc.session.send(shell, probe)
            replies = []
            while True:
                self.assertTrue(shell.poll(int(TIMEOUT * 1000)))
                reply = self.kc.session.recv(shell, mode=0)[1]
                replies.append(reply["msg_type"])
                if reply["parent_header"]["msg_id"] == probe["header"]["msg_id"]:
                    break
        finally:
            shell.close()
        self.assertEqual(replies, ["execute_reply", "kernel_info_reply"])
        with open(self.marker) as f:
            self.assertEqual(f.read(), "x")


class DisplayTests(KernelTestCase):
    def test_update_display_data_keeps_display_id(self):
        done = run(self.kc, 'const h = display.html("<b>one</b>");\nh.update("<b>two</b>");')
        self.assertOk(done)
        shown = done.of_type("display_data")
        self.assertEqual(len(shown), 1)
        display_id = shown[0]["content"]["transient"]["display_id"]
        self.assertTrue(display_id)
        self.assertEqual(shown[0]["content"]["data"]["text/html"], "<b>one</b>")
        updates = done.of_type("update_display_data")
        self.assertGreaterEqual(len(updates), 1)
        self.assertEqual(updates[-1]["content"]["transient"]["display_id"], display_id)
        self.assertEqual(updates[-1]["content"]["data"]["text/html"], "<b>two</b>")

    def test_update_from_a_later_cell(self):
        first = run(self.kc, 'const later = display.html("<i>first</i>");')
        display_id = first.of_type("display_data")[0]["content"]["transient"]["display_id"]
        second = run(self.kc, 'later.update("<i>second</i>");')
        self.assertOk(second)
        # The update belongs to the display's own cell (its parent is the first request), so look at every message.
        seen = iter(second.others)
        deadline = time.time() + TIMEOUT
        while True:
            msg = next(seen, None) or self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            if msg["msg_type"] == "update_display_data" and msg["content"]["transient"]["display_id"] == display_id:
                self.assertEqual(msg["content"]["data"]["text/html"], "<i>second</i>")
                break

    def test_clear_output(self):
        done = run(self.kc, 'console.log("gone");\ndisplay.clear();')
        self.assertOk(done)
        self.assertEqual(len(done.of_type("clear_output")), 1)


class ExecuteTests(KernelTestCase):
    def test_kernel_info(self):
        self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        content = reply["content"]
        self.assertEqual(content["language_info"]["name"], "typescript")
        self.assertEqual(content["language_info"]["file_extension"], ".ts")
        major, minor = (int(x) for x in content["protocol_version"].split(".")[:2])
        self.assertGreaterEqual((major, minor), (5, 3))

    def test_silent_execution_publishes_nothing_and_keeps_the_count(self):
        before = run(self.kc, "1").reply["content"]["execution_count"]
        silent = run(self.kc, "2", silent=True)
        self.assertOk(silent)
        self.assertEqual([m["msg_type"] for m in silent.iopub], ["status", "status"])
        after = run(self.kc, "3").reply["content"]["execution_count"]
        self.assertEqual(after, before + 1)

    def test_user_expressions(self):
        self.assertOk(run(self.kc, "const base = 20;"))
        done = run(self.kc, "1", user_expressions={"double": "base * 2", "bad": "nope("})
        self.assertOk(done)
        expressions = done.reply["content"]["user_expressions"]
        self.assertEqual(expressions["double"]["status"], "ok")
        self.assertEqual(expressions["double"]["data"]["text/plain"], "40")
        self.assertEqual(expressions["bad"]["status"], "error")

    def test_errors_never_kill_the_kernel(self):
        thrown = run(self.kc, 'throw new Error("boom");')
        self.assertEqual(thrown.status, "error")
        self.assertEqual(thrown.reply["content"]["evalue"], "boom")
        self.assertOk(run(self.kc, 'Promise.reject(new Error("nobody catches me")); setTimeout(() => { throw new Error("late"); }, 0); await new Promise((r) => setTimeout(r, 20));', timeout=TIMEOUT))
        # process.exit() from a cell is refused (the kernel's own shutdown path is the only way out).
        exited = run(self.kc, "process.exit(3);")
        self.assertEqual(exited.status, "error")
        self.assertTrue(self.km.is_alive())
        after = run(self.kc, "6 * 7")
        self.assertOk(after)
        self.assertEqual(after.result_text(), "42")

    def test_stop_on_error_aborts_queued_executes(self):
        # The first cell waits for input, so the next two requests are queued behind it for sure.
        first = self.kc.execute('const reply = await input("go?");\nthrow new Error(reply);', allow_stdin=True)
        self.kc.get_stdin_msg(timeout=TIMEOUT)
        second = self.kc.execute("1 + 1")
        third = self.kc.execute("2 + 2", stop_on_error=False)
        # Queued requests cross the shell socket before the input reply crosses stdin: give them the moment.
        time.sleep(0.5)
        self.kc.input("stop")
        self.assertEqual(collect(self.kc, first).status, "error")
        self.assertEqual(collect(self.kc, second).status, "aborted")
        self.assertEqual(collect(self.kc, third).status, "aborted")
        self.assertOk(run(self.kc, "3 + 3"))

    def test_unknown_comm_target_is_closed(self):
        msg = self.kc.session.msg("comm_open", {"comm_id": "c-1", "target_name": "no.such.target", "data": {}})
        self.kc.shell_channel.send(msg)
        deadline = time.time() + TIMEOUT
        while True:
            io = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            if io["msg_type"] == "comm_close":
                self.assertEqual(io["content"]["comm_id"], "c-1")
                break
        info = self.kc.session.msg("comm_info_request", {})
        self.kc.shell_channel.send(info)
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        self.assertEqual(reply["msg_type"], "comm_info_reply")
        self.assertEqual(reply["content"]["comms"], {})


class LongSessionTests(KernelTestCase):
    CELLS = int(os.environ.get("STREAMBOOK_LONG_SESSION_CELLS", "2000"))

    def test_no_message_lost_in_a_long_session(self):
        """All cells are sent at once: every one gets its reply, busy, execute_input, stream, result, idle."""
        ids = {}
        for i in range(self.CELLS):
            ids[self.kc.execute("console.log(%d); %d" % (i, i * 2))] = i
        replies = {}
        deadline = time.time() + TIMEOUT * 4
        while len(replies) < self.CELLS:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.time()))
            parent = msg["parent_header"].get("msg_id")
            if parent in ids:
                replies[parent] = msg
        seen = {msg_id: [] for msg_id in ids}
        idle = 0
        while idle < self.CELLS:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            parent = msg["parent_header"].get("msg_id")
            if parent not in seen:
                continue
            seen[parent].append(msg["msg_type"] if msg["msg_type"] != "status" else msg["content"]["execution_state"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle += 1
        for msg_id, i in ids.items():
            self.assertEqual(replies[msg_id]["content"]["status"], "ok")
            self.assertEqual(seen[msg_id], ["busy", "execute_input", "stream", "execute_result", "idle"], "cell %d" % i)


class RestartTests(unittest.TestCase):
    def test_restart_then_a_cell_works(self):
        km, kc = start_kernel()
        try:
            self.assertEqual(run(kc, "let before = 1;\nbefore").status, "ok")
            pid = km.provisioner.process.pid
            km.restart_kernel(now=False)
            kc.wait_for_ready(timeout=TIMEOUT)
            self.assertNotEqual(km.provisioner.process.pid, pid)
            drain_iopub(kc)
            # A fresh session: the count starts again and the old declaration is gone (so it may be redeclared).
            done = run(kc, "let before = 2;\nbefore")
            self.assertEqual(done.status, "ok")
            self.assertEqual(done.result_text(), "2")
            self.assertEqual(done.reply["content"]["execution_count"], 1)
        finally:
            stop_kernel(km, kc)

    def test_shutdown_exits_cleanly(self):
        km, kc = start_kernel()
        process = km.provisioner.process
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        self.assertEqual(process.wait(timeout=TIMEOUT), 0)


class FloodTests(unittest.TestCase):
    COUNT = int(os.environ.get("STREAMBOOK_FLOOD_COUNT", "10000"))

    def test_malformed_flood_then_valid_request(self):
        km, kc = start_kernel()
        try:
            session = kc.session
            rng = random.Random(7)
            header = lambda t: json.dumps({"msg_id": "f%d" % rng.getrandbits(64), "msg_type": t, "session": "x",
                                           "username": "u", "date": "", "version": "5.3"}).encode()

            def signed(parts):
                return [b"<IDS|MSG>", session.sign(parts)] + parts

            replayable = session.serialize(session.msg("kernel_info_request", {}))
            makers = [
                lambda: [os.urandom(rng.randint(0, 64)) for _ in range(rng.randint(1, 8))],
                lambda: [b"<IDS|MSG>"],
                lambda: [b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}"],
                lambda: signed([b"{not json", b"{}", b"{}", b"{}"]),
                lambda: signed([b"[]", b"{}", b"{}", b"{}"]),
                lambda: signed([json.dumps({"msg_type": "execute_request"}).encode(), b"{}", b"{}", b"{}"]),
                lambda: signed([header("no_such_request"), b"{}", b"{}", b"{}"]),
                lambda: signed([header("execute_request"), b"{}", b"{}", b"\xff\xfe"]),
                lambda: [b"<IDS|MSG>", b"0" * 64, header("execute_request"), b"{}", b"{}", b'{"code":"1"}'],
                lambda: replayable,
            ]
            shell = raw_socket(km, "shell_port")
            control = raw_socket(km, "control_port")
            try:
                shell.send_multipart(replayable)  # first use is legitimate; every later copy is a replay
                self.assertTrue(shell.poll(int(TIMEOUT * 1000)))
                self.assertEqual(session.recv(shell, mode=0)[1]["msg_type"], "kernel_info_reply")
                for i in range(self.COUNT):
                    frames = makers[i % len(makers)]()
                    (shell if (i // len(makers)) % 2 == 0 else control).send_multipart(frames)
                ok = kc.execute("40 + 2")
                done = collect(kc, ok, timeout=TIMEOUT * 2)
                self.assertEqual(done.status, "ok")
                self.assertEqual(done.result_text(), "42")
                info = session.msg("kernel_info_request", {})
                kc.control_channel.send(info)
                self.assertEqual(kc.get_control_msg(timeout=TIMEOUT)["msg_type"], "kernel_info_reply")
                # Nothing in the flood got an answer: the kernel had finished with all of it before "40 + 2".
                self.assertFalse(shell.poll(100))
                self.assertFalse(control.poll(100))
            finally:
                shell.close()
                control.close()
            self.assertTrue(km.is_alive())
        finally:
            stop_kernel(km, kc)


if __name__ == "__main__":
    unittest.main()
