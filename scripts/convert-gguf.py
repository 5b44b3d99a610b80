#!/usr/bin/env python3
"""Copies a GGUF file with its matrices stored in another type, for tests and benchmarks.

Every two-dimensional `blk.*.weight` tensor (the layers' matrices) is written as TYPE
(f32, f16 or q8_0); the rest, and all metadata, as they are.

Usage: convert-gguf.py IN.gguf OUT.gguf --type f16|q8_0
Needs the `gguf` and `numpy` packages (PyPI).
"""

import argparse

import gguf
import numpy as np

TYPES = {
    "f32": gguf.GGMLQuantizationType.F32,
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--type", choices=TYPES, required=True)
    args = parser.parse_args()
    reader = gguf.GGUFReader(args.input)
    architecture = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(args.output, architecture)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        kind = field.types[0]
        value = field.contents()
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(name, value)
        else:
            writer.add_key_value(name, value, kind)
    target = TYPES[args.type]
    for tensor in reader.tensors:
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise SystemExit(f"{tensor.name} is {tensor.tensor_type.name}; the input must be f32")
        data = np.asarray(tensor.data, dtype=np.float32)
        shape = tuple(reversed([int(n) for n in tensor.shape]))
        data = data.reshape(shape)
        if tensor.name.startswith("blk.") and tensor.name.endswith(".weight") and data.ndim == 2 and target != TYPES["f32"]:
            if target == TYPES["f16"]:
                writer.add_tensor(tensor.name, data.astype(np.float16))
            else:
                packed = gguf.quants.quantize(data, target)
                writer.add_tensor(tensor.name, packed, raw_dtype=target)
            continue
        writer.add_tensor(tensor.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
