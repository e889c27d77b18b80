/*
 * bcryptprimitives.dll for running kinship.exe under Wine older than 9.0, for the cross-build
 * check only; never shipped. Rust's standard library (1.78 and later) gets its random numbers
 * from ProcessPrng in bcryptprimitives.dll, which every supported Windows has but Wine 8.0
 * (Debian 12) does not, so kinship.exe would not load there. This DLL, placed next to the
 * exe, exports ProcessPrng and fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which Wine does implement.
 *
 * Built by packaging/windows/cross-build:
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll wine-processprng.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
