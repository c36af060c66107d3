"""jupyter_kernel_test's conformance suite for the streambook kernel, with every attribute set."""
import unittest

import jupyter_kernel_test

from kernel_support import KERNEL_NAME


class StreambookKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world");'
    code_stderr = 'console.error("something went wrong");'

    completion_samples = [
        {"text": "const sample = 'x';\nsample.toUpperC", "matches": {"toUpperCase"}},
        {"text": "Math.ma", "matches": {"max"}},
    ]

    complete_code_samples = ["1 + 1", "const a = 1;", "function f(x: number) {\n  return x;\n}", ""]
    incomplete_code_samples = ["function f(x: number) {", "const values = [1, 2,", "if (true) {\n  console.log(1);"]
    invalid_code_samples = ["const = 5;", "1 +* 2", "let x = = 2;"]

    code_generate_error = 'throw new Error("expected failure");'

    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": '"a" + "b"', "result": "'ab'"},
        {"code": "[1, 2, 3].map((x: number) => x * 2)", "result": "[ 2, 4, 6 ]"},
    ]

    code_display_data = [
        {"code": 'display.html("<b>bold</b>");', "mime": "text/html"},
        {"code": 'display.markdown("# title");', "mime": "text/markdown"},
        {"code": "display.json({ a: 1 });", "mime": "application/json"},
    ]

    code_history_pattern = "1 + *"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "Math.max"
    # IPython's `name?`: the documentation goes to the pager as an execute_reply payload.
    code_page_something = "Math.max?"

    code_clear_output = 'console.log("soon gone");\ndisplay.clear();'


if __name__ == "__main__":
    unittest.main()
