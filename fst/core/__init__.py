"""What every layer of fst shares: the one error type, the argument parser, stop signals, numeric
domains, colour spaces, and the choices made from the hardware (precision, host memory)."""
