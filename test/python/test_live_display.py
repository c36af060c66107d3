"""Drives a streambook kernel through jupyter_client: runs one cell that defines live outputs,
then keeps listening on IOPub after its execute_reply and reports, per display_id, the
update_display_data messages that arrived after the reply. Prints one JSON object.

Usage: /usr/bin/python3 test_live_display.py LIVE_CELL STOP_CELL MIN_UPDATES DEADLINE_S
(run by test/live-display.test.ts with JUPYTER_DATA_DIR holding the streambook kernelspec).
"""
import json
import sys
import time


def main() -> None:
    from jupyter_client.manager import start_new_kernel

    live_cell, stop_cell = sys.argv[1], sys.argv[2]
    min_updates, deadline_s = int(sys.argv[3]), float(sys.argv[4])
    km, kc = start_new_kernel(kernel_name="streambook", startup_timeout=60)
    report = {"created": {}, "after_reply": {}, "before_reply": {}, "errors": [], "stop_reply": None}
    try:
        msg_id = kc.execute(live_cell)
        reply = kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=60)
        report["reply_status"] = reply["content"]["status"]
        if reply["content"]["status"] != "ok":
            report["errors"].append(reply["content"])
        replied = True
        # Messages that were queued before the reply was read were sent before the reply too;
        # jupyter_client keeps arrival order per channel, so tell them apart by the reply's date.
        reply_date = reply["header"]["date"]
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                msg = kc.get_iopub_msg(timeout=0.5)
            except Exception:
                continue
            t = msg["header"]["msg_type"]
            content = msg["content"]
            if t == "error":
                report["errors"].append(content)
            display_id = (content.get("transient") or {}).get("display_id")
            if t == "display_data" and display_id:
                report["created"][display_id] = sorted(content["data"].keys())
            if t == "update_display_data" and display_id:
                late = msg["header"]["date"] > reply_date
                bucket = report["after_reply" if late else "before_reply"]
                entry = bucket.setdefault(display_id, {"count": 0, "mimes": [], "parents": [], "last_text": ""})
                entry["count"] += 1
                entry["mimes"] = sorted(set(entry["mimes"]) | set(content["data"].keys()))
                parent = msg["parent_header"].get("msg_id")
                if parent not in entry["parents"]:
                    entry["parents"].append(parent)
                entry["last_text"] = content["data"].get("text/plain", "")
            # pprint and chart are the displays that update; the cell's log display stays empty.
            updated = [d for d in report["created"] if report["after_reply"].get(d, {}).get("count", 0) >= min_updates]
            done = len(updated) >= 2
            if replied and done:
                break
        report["live_msg_id"] = msg_id
        stop = kc.execute_interactive(stop_cell, timeout=60, output_hook=lambda m: None)
        report["stop_reply"] = stop["content"]["status"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
