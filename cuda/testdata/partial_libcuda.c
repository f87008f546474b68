// A stand-in libcuda for tests: it exports only cuInit and cuGetErrorName,
// so binding the full driver table must report every other symbol missing.
int cuInit(unsigned int flags) { (void)flags; return 100; }
int cuGetErrorName(int r, const char **s) { (void)r; *s = "CUDA_ERROR_NO_DEVICE"; return 0; }
