// Host time per launch of an empty kernel through the runtime (cudaLaunchKernel path), for the overhead
// part of scripts/gpu-check. Built with nvcc on the GPU machine.
// usage: launch_rate LAUNCHES   -> prints "ns_per_launch X" and "launches_per_s Y"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

__global__ void empty_kernel() {}

#define CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
    std::printf("FAIL %s -> %d %s\n", #call, (int)e_, cudaGetErrorString(e_)); return 1; } } while (0)

int main(int argc, char **argv) {
    long n = argc > 1 ? std::atol(argv[1]) : 200000;
    CHECK(cudaFree(0));
    for (int i = 0; i < 1000; i++) empty_kernel<<<1, 32>>>();
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    // Host time per launch call: batches of 512 (below the device queue's depth, so no call
    // waits for the GPU), the synchronisation after each batch not counted.
    double ns = 0;
    long done = 0;
    while (done < n) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 512; i++) empty_kernel<<<1, 32>>>();
        ns += std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        CHECK(cudaGetLastError());
        CHECK(cudaDeviceSynchronize());
        done += 512;
    }
    std::printf("ns_per_launch %.1f\nlaunches_per_s %.0f\n", ns / done, done * 1e9 / ns);
    return 0;
}
