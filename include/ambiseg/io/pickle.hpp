// ambiseg/io/pickle.hpp — a restricted, non-executing reader for Python pickles.
//
// The LIDC data set of PHiSeg / the Probabilistic-UNet ports (and the QUBIQ pickle of
// Medical Matting) is a pickled dict of NumPy arrays. Python's unpickler can run any
// callable the file names; this one runs none. It interprets the opcodes of protocols
// 2–5 that plain containers and NumPy arrays need, rebuilds arrays from their documented
// reduce protocol, and refuses every other global with a format_error naming it.
//
//   pickle/value.hpp    the value model: document (owns input and values), value, array
//   pickle/numpy.hpp    the callables admitted and NumPy's reduce protocol
//   pickle/machine.hpp  the opcode machine; loads(bytes) and load_file(path)
#pragma once

#include "ambiseg/io/pickle/machine.hpp"
#include "ambiseg/io/pickle/numpy.hpp"
#include "ambiseg/io/pickle/value.hpp"
