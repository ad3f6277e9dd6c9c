"""The launcher keeps TensorFlow out of seldon-core's import (issue 11, serving memory).

Each check runs in a fresh interpreter: TensorFlow, once imported, cannot be
unloaded, and the launcher's set-up must come before seldon-core is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_seldon_core_imports_without_tensorflow_and_tftensor_still_works():
    out = run(
        """
        import sys
        from stack.seldon.launch import defer_tensorflow, load_on_first_request

        assert defer_tensorflow()
        load_on_first_request()
        import seldon_core.microservice, seldon_core.wrapper, seldon_core.seldon_client
        import clearsight.seldon_model
        print("after seldon-core:", "tensorflow" in sys.modules)

        import numpy as np
        from google.protobuf import json_format
        from seldon_core import utils

        array = np.arange(6, dtype=np.float32).reshape(2, 3)
        # gRPC: seldon-core converts a tftensor with tf.make_tensor_proto / make_ndarray
        datadef = utils.array_to_grpc_datadef("tftensor", array)
        assert (utils.grpc_datadef_to_array(datadef) == array).all()
        # REST: a JSON tftensor is parsed into TensorFlow's TensorProto
        body = {"data": {"tftensor": json_format.MessageToDict(datadef.tftensor)}}
        assert (utils.extract_request_parts_json(body)[0] == array).all()
        print("after tftensor:", "tensorflow" in sys.modules)

        # TensorFlow imported after seldon-core's protos: one TensorProto for both
        from tensorflow.core.framework.tensor_pb2 import TensorProto
        assert type(datadef.tftensor) is TensorProto
        """
    )
    assert "after seldon-core: False" in out
    assert "after tftensor: True" in out


def test_the_grpc_process_skips_only_seldon_cores_start_up_load():
    out = run(
        """
        from seldon_core import microservice
        calls = []
        microservice._run_grpc_server = lambda user_object, *rest: (
            user_object.load(), user_object.load(), user_object.load()
        )

        from stack.seldon.launch import load_on_first_request

        load_on_first_request()

        class Model:
            def load(self):
                calls.append("load")

        model = Model()
        microservice._run_grpc_server(model, None, None, None, "127.0.0.1:1")
        print("loads:", len(calls), "instance attribute left:", "load" in vars(model))
        """
    )
    assert "loads: 2 instance attribute left: False" in out
