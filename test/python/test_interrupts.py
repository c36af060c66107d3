"""Interrupts through jupyter_client of code that keeps the main thread busy where Node's SIGINT
watchdog cannot reach it: a loop after a cell's first await (SIGINT and interrupt_request), a loop in
a timer callback a cell set up, and a foreachRDD function that never returns. Each time the loop must
stop, every variable must be kept, and the next cell must run.

Run by test/kernel-interrupts.test.ts (JUPYTER_DATA_DIR holds the streambook kernelspec)."""
import time
import unittest
from queue import Empty

from kernel_support import TIMEOUT, KernelTestCase, collect, run


class ForcedInterruptTests(KernelTestCase):
    def setUp(self):
        super().setUp()
        self.assertOk(run(self.kc, "let kept = 41;"))

    def started(self, msg_id):
        """Waits for the cell's execute_input, then gives its first await a moment to pass."""
        deadline = time.time() + TIMEOUT
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
                break
        time.sleep(1.0)

    def no_reply_yet(self, msg_id, seconds=1.0):
        """The main thread is spinning: nothing answers on shell meanwhile."""
        try:
            msg = self.kc.get_shell_msg(timeout=seconds)
        except Empty:
            return
        self.assertNotEqual(msg["parent_header"].get("msg_id"), msg_id, "the cell answered before the interrupt")

    def interrupt_request(self):
        request = self.kc.session.msg("interrupt_request", {})
        self.kc.control_channel.send(request)
        deadline = time.time() + TIMEOUT
        while True:
            reply = self.kc.get_control_msg(timeout=max(0.1, deadline - time.time()))
            if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
                self.assertEqual(reply["content"]["status"], "ok")
                return

    def assert_interrupted(self, msg_id):
        done = collect(self.kc, msg_id)
        self.assertEqual(done.status, "error", done.reply["content"])
        self.assertEqual(done.reply["content"]["ename"], "KeyboardInterrupt")

    def assert_kept(self):
        after = run(self.kc, "kept + 1")
        self.assertOk(after)
        self.assertEqual(after.result_text(), "42")

    def test_loop_after_first_await_sigint(self):
        msg_id = self.kc.execute("kept = 41;\nawait new Promise((r) => setTimeout(r, 20));\nfor (;;) {}")
        self.started(msg_id)
        self.no_reply_yet(msg_id)
        self.km.interrupt_kernel()  # the kernelspec's mode: SIGINT to the kernel's process group
        self.assert_interrupted(msg_id)
        self.assert_kept()

    def test_loop_after_first_await_interrupt_request(self):
        msg_id = self.kc.execute("await null;\nconsole.log('spinning');\nwhile (kept > 0) {}")
        self.started(msg_id)
        self.no_reply_yet(msg_id)
        self.interrupt_request()
        done = collect(self.kc, msg_id)
        self.assertEqual(done.reply["content"]["ename"], "KeyboardInterrupt")
        self.assertIn("spinning", done.stdout())  # output sent just before the loop is not lost
        self.assert_kept()

    def test_loop_in_a_timer_callback(self):
        scheduled = run(self.kc, "setTimeout(() => { kept = 41; for (;;) {} }, 10);\n'scheduled'")
        self.assertOk(scheduled)
        time.sleep(0.5)
        waiting = self.kc.execute("kept + 1")  # queued behind the spinning timer
        self.no_reply_yet(waiting)
        self.km.interrupt_kernel()
        done = collect(self.kc, waiting)
        # The interrupt stopped the timer's loop; the queued cell was not interrupted, it ran.
        self.assertOk(done)
        self.assertEqual(done.result_text(), "42")

    def test_foreachrdd_that_never_returns(self):
        started = run(self.kc, "\n".join([
            "const ctx = new StreamingContext(sc, Milliseconds(100));",
            "const batches: RDD<number>[] = [];",
            "for (let i = 0; i < 100; i++) batches.push(sc.parallelize([i]));",
            "let seen = 0;",
            "ctx.queueStream(batches).foreachRDD((rdd) => { seen += rdd.count(); if (seen === 3) { for (;;) {} } });",
            "ctx.start();",
        ]))
        self.assertOk(started)
        time.sleep(1.5)
        waiting = self.kc.execute("seen")
        self.no_reply_yet(waiting)
        self.interrupt_request()
        done = collect(self.kc, waiting)
        self.assertOk(done)
        # Later batches ran on: the stream was not stopped, only the stuck batch's function.
        self.assertGreaterEqual(int(done.result_text()), 3)
        stopped = run(self.kc, "await ctx.stop();\nctx.state")
        self.assertOk(stopped)
        self.assertEqual(stopped.result_text(), "'stopped'")
        self.assert_kept()


if __name__ == "__main__":
    unittest.main()
