"""The judge as a separate process: one JSON request per line on stdin, one verdict per line on stdout.

Instructor-only. ``sandbox.JudgeWorker`` starts it with an address-space limit and gives each
request a wall-clock limit, so no record a kernel wrote can make the grader itself run out of
memory or time. Request: ``{"grade_id", "path", "seed"}``; reply: ``{"passed", "message"}``.
"""
import json
import sys

import torch

import judge

torch.set_num_threads(1)


def main() -> None:
    for line in sys.stdin:
        try:
            req = json.loads(line)
            verdict = judge.judge_file(str(req["grade_id"]), str(req["path"]), int(req["seed"]))
            reply = {"passed": verdict.passed, "message": verdict.message}
        except MemoryError:
            reply = {"passed": False, "message": "Hidden tests failed: your results could not be checked within "
                                                 "the grader's memory limit."}
        except Exception as err:  # noqa: BLE001 - one bad request must not end the worker
            reply = {"passed": False, "message": f"Hidden tests failed: the results could not be checked "
                                                 f"({type(err).__name__})."}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
