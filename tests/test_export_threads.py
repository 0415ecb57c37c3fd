"""`export` called from several threads of one process (a service exporting in the background).

The exporter was silenced by redirecting sys.stdout, the process's, to a devnull file that it then
closed: another thread's lines printed during an export were lost, two exports at once both failed
inside torch.export, and sys.stdout could be left pointing at the closed file. Exports now run one
after the other, and sys.stdout is never touched.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from _runtime_fixtures import nano_model
from alignvar_edge.export import onnx_export as ox
from alignvar_edge.manifest import load_verified


def test_two_exports_in_two_threads_run_one_after_the_other_and_leave_stdout_alone(tmp_path, monkeypatch, capsys):
    model = nano_model()
    stdout = sys.stdout
    busy = {"now": 0, "most": 0}
    count = threading.Lock()
    export_graph, light_optimize = ox.export_graph, ox._light_optimize

    def counted_export_graph(*args: Any, **kwargs: Any) -> None:
        with count:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        try:
            export_graph(*args, **kwargs)
        finally:
            with count:
                busy["now"] -= 1

    def with_a_heartbeat(ir_model: Any) -> None:
        # another thread prints while the exporter is being silenced
        beat = threading.Thread(target=print, args=("heartbeat",))
        beat.start()
        beat.join()
        light_optimize(ir_model)

    monkeypatch.setattr(ox, "export_graph", counted_export_graph)
    monkeypatch.setattr(ox, "_light_optimize", with_a_heartbeat)
    failed: list[BaseException] = []

    def export(name: str) -> None:
        try:
            ox.export_onnx(model, tmp_path / name, batch=1, n_tiles=1)
        except BaseException as e:       # noqa: BLE001 - the assertion below names it
            failed.append(e)

    threads = [threading.Thread(target=export, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not failed, failed
    assert busy["most"] == 1                     # one export at a time
    for name in ("a", "b"):
        assert load_verified(tmp_path / name).parity["passed"]
    assert sys.stdout is stdout and not sys.stdout.closed
    assert capsys.readouterr().out.count("heartbeat\n") == 2
