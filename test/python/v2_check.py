#!/usr/bin/env python3
"""Checks a server's inference.GRPCInferenceService as Triton's own clients use it, with a second implementation.

    /usr/bin/python3 test/python/v2_check.py ADDRESS PLAN.json

The stubs are generated at run time by grpc_tools.protoc from proto/grpc_service.proto and proto/model_config.proto
into a temporary folder: the Python side shares nothing with the server but the .proto files. Requests are built
and answers read as tritonclient.grpc does it (numpy arrays to raw_input_contents, BYTES as 4-byte little-endian
lengths and their bytes; outputs found by name, np.frombuffer over raw_output_contents, reshaped to the answered
shape), and, for typed contents, as KServe clients send them (fp32_contents, int64_contents, ...).

PLAN.json (written by test/wire-compat.test.ts) says what the server serves and what it must answer:
    server: {name, extensions}
    models: {NAME: {platform, max_batch_size, dynamic_batching (bool: whether ModelConfig has it),
                    inputs: [{name, datatype, shape}], outputs: [...]}}  (shape: -1 = the batch dimension)
    cases: [{id, model, inputs: [{name, datatype, shape, data}], outputs: [{name, datatype, shape, data}]}]
        each case's outputs are onnxruntime's own answer to its inputs, every output in the model's order.
    stream_cases: [case id, case id]: the good requests of the stream, a bad one is sent between them.
    mixed_case: the id of a case with two outputs or more (requested outputs: a subset, and a reversed order).

Prints one JSON object on stdout, {"checks": [{"name", "ok", "detail"}]}; exits 0 when every check passed, 1 when
one failed, 3 when this interpreter lacks a package (the message names the Debian packages to install).
"""
import json
import os
import struct
import sys
import tempfile
import time
import traceback

try:
    import grpc
    import numpy as np
    from grpc_tools import protoc
except ImportError as missing:
    sys.stderr.write(f"v2_check.py: {missing}; install python3-grpcio python3-grpc-tools python3-numpy (Debian)\n")
    sys.exit(3)

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
DEADLINE_S = 10
# tritonclient.grpc's channel options: no message-size limit on the client side.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]

# tritonclient.utils.triton_to_np_dtype, little-endian explicitly: the protocol's raw contents are little-endian.
NP_DTYPES = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

# The InferTensorContents field that carries each datatype (KServe's typed contents).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

# Tolerance for floats computed by the model: the server's batch and the reference's may differ in size.
FLOAT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def config_type(datatype):
    """The model config's DataType for a protocol datatype: TYPE_FP32 for FP32, but TYPE_STRING for BYTES."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def generate_stubs(out_dir):
    """grpc_service_pb2 and its _grpc module, generated from the project's protos; importable from out_dir."""
    status = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", "grpc_service.proto", "model_config.proto"]
    )
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc exited {status} on {PROTO_DIR}")
    sys.path.insert(0, out_dir)
    import grpc_service_pb2
    import grpc_service_pb2_grpc
    import model_config_pb2

    return grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2


class Report:
    def __init__(self):
        self.checks = []

    def check(self, name):
        """Runs the decorated function at once, as check `name`: it returns what is wrong ('' when nothing is)."""

        def run(fn):
            try:
                problem = fn()
                if not isinstance(problem, str):  # a check that forgot to say is a check that failed
                    problem = f"the check returned {problem!r}, not what is wrong"
            except grpc.RpcError as error:
                problem = f"unexpected status {error.code().name}: {error.details()}"
            except Exception:  # noqa: BLE001 - every failure becomes the check's detail
                problem = traceback.format_exc(limit=3)
            self.checks.append({"name": name, "ok": problem == "", "detail": problem})

        return run

    def failed(self):
        return [c for c in self.checks if not c["ok"]]


def as_numpy(response, name):
    """tritonclient.grpc.InferResult.as_numpy: the output named `name`, decoded from raw_output_contents."""
    for index, output in enumerate(response.outputs):
        if output.name != name:
            continue
        shape = list(output.shape)
        if index < len(response.raw_output_contents):
            raw = response.raw_output_contents[index]
            array = deserialize_bytes_tensor(raw) if output.datatype == "BYTES" else np.frombuffer(raw, dtype=NP_DTYPES[output.datatype])
        elif output.datatype == "BYTES":
            array = np.array(list(output.contents.bytes_contents), dtype=np.object_)
        else:
            array = np.array(getattr(output.contents, CONTENTS_FIELDS[output.datatype]), dtype=NP_DTYPES[output.datatype])
        return array.reshape(shape)
    return None


def serialize_bytes_tensor(array):
    """tritonclient.utils.serialize_byte_tensor: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in array.ravel())


def deserialize_bytes_tensor(encoded):
    """tritonclient.utils.deserialize_bytes_tensor: the elements of a BYTES tensor's raw contents."""
    items = []
    offset = 0
    while offset < len(encoded):
        (length,) = struct.unpack_from("<I", encoded, offset)
        offset += 4
        items.append(encoded[offset : offset + length])
        offset += length
    return np.array(items, dtype=np.object_)


def plan_array(tensor):
    """A plan tensor as numpy: BYTES as an object array of UTF-8 bytes, as tritonclient holds strings."""
    if tensor["datatype"] == "BYTES":
        return np.array([s.encode("utf-8") for s in tensor["data"]], dtype=np.object_).reshape(tensor["shape"])
    return np.array(tensor["data"], dtype=NP_DTYPES[tensor["datatype"]]).reshape(tensor["shape"])


def compare(response, expected_outputs):
    """'' when `response` holds exactly `expected_outputs`, in that order, with their datatypes, shapes and values."""
    names = [o.name for o in response.outputs]
    wanted = [o["name"] for o in expected_outputs]
    if names != wanted:
        return f"outputs {names}, expected {wanted}"
    if len(response.raw_output_contents) != len(response.outputs):
        return f"{len(response.raw_output_contents)} raw_output_contents for {len(response.outputs)} outputs"
    for output, expected in zip(response.outputs, expected_outputs):
        if output.datatype != expected["datatype"]:
            return f'output "{output.name}": datatype {output.datatype}, expected {expected["datatype"]}'
        actual = as_numpy(response, output.name)
        want = plan_array(expected)
        if list(actual.shape) != list(want.shape):
            return f'output "{output.name}": shape {list(actual.shape)}, expected {list(want.shape)}'
        # Integers and this model's doubles are exact; float32 results of a network, within tolerance.
        same = np.allclose(actual, want, **FLOAT_TOLERANCE) if expected["datatype"] in ("FP16", "FP32") else np.array_equal(actual, want)
        if not same:
            return f'output "{output.name}": {actual.ravel().tolist()}, onnxruntime: {want.ravel().tolist()}'
    return ""


def expect_status(call, code):
    """'' when `call()` fails with gRPC status `code` and a message; else what happened."""
    try:
        call()
    except grpc.RpcError as error:
        if error.code() != code:
            return f"status {error.code().name} ({error.details()}), expected {code.name}"
        if not error.details():
            return f"status {code.name} without a message"
        return ""
    return f"succeeded, expected {code.name}"


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: v2_check.py ADDRESS PLAN.json\n")
        return 2
    address, plan_path = argv[1], argv[2]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    with tempfile.TemporaryDirectory(prefix="v2-stubs-") as stubs:
        pb, pb_grpc, config_pb = generate_stubs(stubs)
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            report = run_checks(pb, pb_grpc, config_pb, channel, plan)
    print(json.dumps({"checks": report.checks}))
    return 1 if report.failed() else 0


def run_checks(pb, pb_grpc, config_pb, channel, plan):
    grpc.channel_ready_future(channel).result(timeout=DEADLINE_S)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    report = Report()
    started_ms = int(time.time() * 1000)
    cases = {case["id"]: case for case in plan["cases"]}
    # What each model answered successfully, for ModelStatistics: requests and rows.
    answered = {name: {"requests": 0, "rows": 0} for name in plan["models"]}

    def count(response):
        """Counts a successful answer, by the model and rows it names, for ModelStatistics."""
        if response.model_name in answered and response.outputs:
            answered[response.model_name]["requests"] += 1
            answered[response.model_name]["rows"] += response.outputs[0].shape[0]

    def infer_request(case, encoding, requested=None, request_id=""):
        """A ModelInferRequest for `case`: raw_input_contents as tritonclient sends, or typed contents."""
        request = pb.ModelInferRequest(model_name=case["model"], id=request_id)
        for tensor in case["inputs"]:
            sent = request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
            array = plan_array(tensor)
            if encoding == "raw":
                request.raw_input_contents.append(serialize_bytes_tensor(array) if tensor["datatype"] == "BYTES" else array.tobytes())
            else:
                getattr(sent.contents, CONTENTS_FIELDS[tensor["datatype"]]).extend(array.ravel().tolist())
        for name in requested or []:
            request.outputs.add(name=name)
        return request

    @report.check("ServerLive")
    def _():
        live = stub.ServerLive(pb.ServerLiveRequest(), timeout=DEADLINE_S).live
        return "" if live is True else f"live is {live}"

    @report.check("ServerReady")
    def _():
        ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=DEADLINE_S).ready
        return "" if ready is True else f"ready is {ready}"

    @report.check("ServerMetadata")
    def _():
        metadata = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=DEADLINE_S)
        got = {"name": metadata.name, "extensions": sorted(metadata.extensions)}
        want = {"name": plan["server"]["name"], "extensions": sorted(plan["server"]["extensions"])}
        if got != want:
            return f"{got}, expected {want}"
        return "" if metadata.version else "version is empty"

    for model, spec in plan["models"].items():

        @report.check(f"ModelReady {model}")
        def _():
            ready = stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=DEADLINE_S).ready
            return "" if ready is True else f"ready is {ready}"

        @report.check(f"ModelMetadata {model}")
        def _():
            metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=DEADLINE_S)
            tensors = lambda ts: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts]  # noqa: E731
            got = {"name": metadata.name, "platform": metadata.platform, "inputs": tensors(metadata.inputs), "outputs": tensors(metadata.outputs)}
            want = {"name": model, "platform": spec["platform"], "inputs": spec["inputs"], "outputs": spec["outputs"]}
            if got != want:
                return f"{got}, expected {want}"
            return "" if "1" in metadata.versions else f"versions {list(metadata.versions)} lack 1"

        @report.check(f"ModelConfig {model}")
        def _():
            config = stub.ModelConfig(pb.ModelConfigRequest(name=model), timeout=DEADLINE_S).config
            # Triton's config: dims without the batch dimension when max_batch_size > 0, data types as the enum.
            tensors = lambda ts: [{"name": t.name, "data_type": config_pb.DataType.Name(t.data_type), "dims": list(t.dims)} for t in ts]  # noqa: E731
            batching = spec["max_batch_size"] > 0
            as_config = lambda ts: [  # noqa: E731
                {"name": t["name"], "data_type": config_type(t["datatype"]), "dims": t["shape"][1:] if batching else t["shape"]} for t in ts
            ]
            got = {
                "name": config.name,
                "platform": config.platform,
                "max_batch_size": config.max_batch_size,
                "dynamic_batching": config.HasField("dynamic_batching"),
                "input": tensors(config.input),
                "output": tensors(config.output),
            }
            want = {
                "name": model,
                "platform": spec["platform"],
                "max_batch_size": spec["max_batch_size"],
                "dynamic_batching": spec["dynamic_batching"],
                "input": as_config(spec["inputs"]),
                "output": as_config(spec["outputs"]),
            }
            return "" if got == want else f"{got}, expected {want}"

    # raw: tritonclient's encoding; typed: KServe's typed contents; gzip: raw, with tritonclient's
    # compression_algorithm="gzip" (the message compressed on the wire).
    for case in plan["cases"]:
        for encoding in ("raw", "typed", "gzip"):

            @report.check(f"ModelInfer {case['id']} {encoding}")
            def _():
                request_id = f"{case['id']}-{encoding}"
                request = infer_request(case, "typed" if encoding == "typed" else "raw", request_id=request_id)
                compression = grpc.Compression.Gzip if encoding == "gzip" else None
                response = stub.ModelInfer(request, timeout=DEADLINE_S, compression=compression)
                count(response)
                if (response.model_name, response.model_version, response.id) != (case["model"], "1", request_id):
                    return f"answered as {(response.model_name, response.model_version, response.id)}, expected {(case['model'], '1', request_id)}"
                return compare(response, case["outputs"])

    mixed = cases[plan["mixed_case"]]
    reversed_outputs = list(reversed(mixed["outputs"]))
    for label, requested in (("reversed", reversed_outputs), ("subset", reversed_outputs[:1])):

        @report.check(f"ModelInfer requested outputs {label}")
        def _():
            names = [o["name"] for o in requested]
            response = stub.ModelInfer(infer_request(mixed, "raw", requested=names), timeout=DEADLINE_S)
            count(response)
            return compare(response, requested)

    @report.check("ModelInfer inputs in another order than the model's")
    def _():
        # raw_input_contents follow the request's inputs, whatever order the client built them in.
        request = infer_request({**mixed, "inputs": list(reversed(mixed["inputs"]))}, "raw")
        response = stub.ModelInfer(request, timeout=DEADLINE_S)
        count(response)
        return compare(response, mixed["outputs"])

    @report.check("ModelInfer with tritonclient's priority and timeout parameters")
    def _():
        # tritonclient.grpc sets them as request parameters: priority a uint64, timeout an int64 of microseconds.
        request = infer_request(mixed, "raw")
        request.parameters["priority"].uint64_param = 1
        request.parameters["timeout"].int64_param = DEADLINE_S * 1_000_000
        response = stub.ModelInfer(request, timeout=DEADLINE_S)
        count(response)
        return compare(response, mixed["outputs"])

    @report.check("ModelStreamInfer")
    def _():
        first, last = (cases[i] for i in plan["stream_cases"])
        bad = infer_request(first, "raw", request_id="stream-bad")
        bad.inputs[0].name = "no_such_input"
        requests = [infer_request(first, "raw", request_id="stream-0"), bad, infer_request(last, "raw", request_id="stream-2")]
        responses = list(stub.ModelStreamInfer(iter(requests), timeout=DEADLINE_S))
        for response in responses:
            if not response.error_message:
                count(response.infer_response)
        if len(responses) != 3:
            return f"{len(responses)} responses to 3 requests"
        ids = [r.infer_response.id for r in responses]
        if ids != ["stream-0", "stream-bad", "stream-2"]:
            return f"ids {ids}, expected stream-0, stream-bad, stream-2 (in order)"
        if "no_such_input" not in responses[1].error_message:
            return f"the bad request's error_message {responses[1].error_message!r} does not name the input"
        for response, case in ((responses[0], first), (responses[2], last)):
            if response.error_message:
                return f"{response.infer_response.id}: error_message {response.error_message!r}"
            problem = compare(response.infer_response, case["outputs"])
            if problem:
                return f"{response.infer_response.id}: {problem}"
        return ""

    bad_cases = {
        "unknown input": lambda r: setattr(r.inputs[0], "name", "no_such_input"),
        "datatype mismatch": lambda r: setattr(r.inputs[0], "datatype", "FP64" if r.inputs[0].datatype != "FP64" else "FP32"),
        "wrong raw byte length": lambda r: r.raw_input_contents.__setitem__(0, r.raw_input_contents[0][:-1]),
        "both encodings": lambda r: r.inputs[0].contents.fp32_contents.append(1.0),
        "unknown output": lambda r: r.outputs.add(name="no_such_output"),
    }
    # Each spoils one good request of the first case (an FP32 input first) in one way.
    first_case = plan["cases"][0]
    for label, spoil in bad_cases.items():

        @report.check(f"ModelInfer {label}: INVALID_ARGUMENT")
        def _():
            request = infer_request(first_case, "raw")
            spoil(request)
            return expect_status(lambda: stub.ModelInfer(request, timeout=DEADLINE_S), grpc.StatusCode.INVALID_ARGUMENT)

    @report.check("ModelInfer unknown model: NOT_FOUND")
    def _():
        request = infer_request(first_case, "raw")
        request.model_name = "no_such_model"
        return expect_status(lambda: stub.ModelInfer(request, timeout=DEADLINE_S), grpc.StatusCode.NOT_FOUND)

    @report.check("ModelMetadata unknown model: NOT_FOUND")
    def _():
        request = pb.ModelMetadataRequest(name="no_such_model")
        return expect_status(lambda: stub.ModelMetadata(request, timeout=DEADLINE_S), grpc.StatusCode.NOT_FOUND)

    @report.check("SystemSharedMemoryStatus: UNIMPLEMENTED")
    def _():
        request = pb.SystemSharedMemoryStatusRequest()
        return expect_status(lambda: stub.SystemSharedMemoryStatus(request, timeout=DEADLINE_S), grpc.StatusCode.UNIMPLEMENTED)

    for model in plan["models"]:

        @report.check(f"ModelStatistics {model}")
        def _():
            response = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=DEADLINE_S)
            if [(s.name, s.version) for s in response.model_stats] != [(model, "1")]:
                return f"statistics for {[(s.name, s.version) for s in response.model_stats]}, expected {[(model, '1')]}"
            stats = response.model_stats[0]
            requests, rows = answered[model]["requests"], answered[model]["rows"]
            inference = stats.inference_stats
            got = {
                "inference_count": stats.inference_count,
                "success.count": inference.success.count,
                "fail.count": inference.fail.count,
                "queue.count": inference.queue.count,
                "compute_infer.count": inference.compute_infer.count,
            }
            want = {"inference_count": rows, "success.count": requests, "fail.count": 0, "queue.count": requests, "compute_infer.count": requests}
            if got != want:
                return f"{got}, expected {want} (the requests this script had answered)"
            if not 1 <= stats.execution_count <= requests:
                return f"execution_count {stats.execution_count}, expected 1 to {requests}"
            # Triton's batch_stats count executions per batch size: they add up to the totals.
            executions = sum(b.compute_infer.count for b in stats.batch_stats)
            batched_rows = sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats)
            if (executions, batched_rows) != (stats.execution_count, stats.inference_count):
                totals = (stats.execution_count, stats.inference_count)
                return f"batch_stats add up to {executions} executions of {batched_rows} rows; the totals are {totals}"
            now_ms = int(time.time() * 1000)
            if not started_ms - 1000 <= stats.last_inference <= now_ms + 1000:
                return f"last_inference {stats.last_inference} is not milliseconds since the epoch between {started_ms} and {now_ms}"
            return ""

    @report.check("ModelStatistics all models")
    def _():
        response = stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=DEADLINE_S)
        names = sorted(s.name for s in response.model_stats)
        return "" if names == sorted(plan["models"]) else f"statistics for {names}, expected {sorted(plan['models'])}"

    @report.check("RepositoryIndex")
    def _():
        for ready in (False, True):
            index = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready), timeout=DEADLINE_S)
            got = sorted((m.name, m.version, m.state) for m in index.models)
            want = sorted((name, "1", "READY") for name in plan["models"])
            if got != want:
                return f"ready={ready}: {got}, expected {want}"
        return ""

    return report


if __name__ == "__main__":
    sys.exit(main(sys.argv))
