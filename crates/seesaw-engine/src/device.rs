//! Where tensors live: `--device cpu` (burn's flex backend, the default), `--device cuda[:N]`
//! (burn's CUDA backend; a build with `--features cuda`) or `--device wgpu[...]` (burn's wgpu
//! backend on Vulkan, Metal or DX12: AMD, Intel, Apple and NVIDIA GPUs, and Mesa's lavapipe on
//! a CPU; a build with `--features wgpu`). Asking for a GPU that is not there is an error
//! naming what is missing, checked before burn touches the driver (burn panics from deep
//! inside when it cannot load it).

use std::fmt;
use std::str::FromStr;

use seesaw_model::burn::tensor::Device;

use crate::error::{EngineError, Result};

/// A `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// The GPU with this CUDA ordinal.
    Cuda(usize),
    /// An adapter of burn's wgpu backend.
    Wgpu(WgpuAdapter),
}

/// Which wgpu adapter `--device wgpu...` names (wgpu lists adapters per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WgpuAdapter {
    /// `wgpu`: wgpu's choice (a high-power GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides).
    Default,
    /// `wgpu:N`: the N-th discrete GPU.
    Discrete(usize),
    /// `wgpu:integrated[:N]`: the N-th integrated GPU.
    Integrated(usize),
    /// `wgpu:cpu`: a CPU adapter (Mesa's lavapipe, or another software driver).
    Cpu,
}

impl FromStr for DeviceSpec {
    type Err = EngineError;

    /// `cpu`, `cuda` (GPU 0), `cuda:N`, `wgpu`, `wgpu:N`, `wgpu:integrated[:N]` or
    /// `wgpu:cpu`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            EngineError::Request(format!(
                "--device {s:?}: expected cpu, cuda or cuda:N (N a GPU index), wgpu, wgpu:N \
                 (the N-th discrete GPU), wgpu:integrated[:N] or wgpu:cpu"
            ))
        };
        let index = |n: &str| n.parse::<usize>().map_err(|_| bad());
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            "wgpu" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Default)),
            "wgpu:cpu" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Cpu)),
            "wgpu:integrated" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Integrated(0))),
            other => {
                if let Some(n) = other.strip_prefix("cuda:") {
                    index(n).map(DeviceSpec::Cuda)
                } else if let Some(n) = other.strip_prefix("wgpu:integrated:") {
                    index(n).map(|n| DeviceSpec::Wgpu(WgpuAdapter::Integrated(n)))
                } else if let Some(n) = other.strip_prefix("wgpu:") {
                    index(n).map(|n| DeviceSpec::Wgpu(WgpuAdapter::Discrete(n)))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Wgpu(WgpuAdapter::Default) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(WgpuAdapter::Discrete(n)) => write!(f, "wgpu:{n}"),
            DeviceSpec::Wgpu(WgpuAdapter::Integrated(n)) => write!(f, "wgpu:integrated:{n}"),
            DeviceSpec::Wgpu(WgpuAdapter::Cpu) => write!(f, "wgpu:cpu"),
        }
    }
}

impl DeviceSpec {
    /// The burn device (without autodiff), after checking that it can work.
    pub fn open(&self) -> Result<Device> {
        match *self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Cuda(index) => open_cuda(index),
            DeviceSpec::Wgpu(adapter) => open_wgpu(adapter, self),
        }
    }
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu(_adapter: WgpuAdapter, spec: &DeviceSpec) -> Result<Device> {
    Err(EngineError::Request(format!(
        "--device {spec}: this seesaw was built without wgpu; build it with \
         `cargo build --release --features wgpu` (README, \"GPUs\")"
    )))
}

/// Opens (once per process: burn's wgpu runtime is initialised once per adapter) the adapter
/// and runs a test kernel on it.
#[cfg(feature = "wgpu")]
fn open_wgpu(adapter: WgpuAdapter, spec: &DeviceSpec) -> Result<Device> {
    use seesaw_model::burn::tensor::{DeviceKind, Tensor};
    use std::sync::Mutex;
    static OPENED: Mutex<Vec<(WgpuAdapter, Device)>> = Mutex::new(Vec::new());
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, d)) = opened.iter().find(|(a, _)| *a == adapter) {
        return Ok(d.clone());
    }
    let kind = match adapter {
        WgpuAdapter::Default => DeviceKind::DefaultDevice,
        WgpuAdapter::Discrete(n) => DeviceKind::DiscreteGpu(n),
        WgpuAdapter::Integrated(n) => DeviceKind::IntegratedGpu(n),
        WgpuAdapter::Cpu => DeviceKind::Cpu,
    };
    let init = std::panic::catch_unwind(|| Device::wgpu_options().device_kind(kind).init());
    let device = match init {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Err(EngineError::Request(format!(
                "--device {spec}: no such wgpu adapter ({e}); wgpu needs a Vulkan, Metal or \
                 DX12 driver (on Linux without a GPU, Mesa's lavapipe: apt-get install \
                 mesa-vulkan-drivers libvulkan1, then --device wgpu:cpu), or use --device cpu"
            )));
        }
        Err(panic) => {
            return Err(EngineError::Request(format!(
                "--device {spec}: wgpu failed to start ({})",
                panic_text(&*panic)
            )));
        }
    };
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<1>::ones([4], &device) * 2.0;
        t.sum().into_scalar::<f32>()
    });
    match probe {
        Ok(v) if (v - 8.0).abs() < 1e-6 => {
            opened.push((adapter, device.clone()));
            Ok(device)
        }
        Ok(v) => Err(EngineError::Request(format!(
            "--device {spec}: a test kernel gave {v} instead of 8"
        ))),
        Err(panic) => Err(EngineError::Request(format!(
            "--device {spec}: the wgpu backend failed to run a kernel ({})",
            panic_text(&*panic)
        ))),
    }
}

/// The message of a caught panic.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(index: usize) -> Result<Device> {
    Err(EngineError::Request(format!(
        "--device cuda:{index}: this seesaw was built without CUDA; build it with \
         `cargo build --release --features cuda` (README, \"GPUs\")"
    )))
}

#[cfg(feature = "cuda")]
fn open_cuda(index: usize) -> Result<Device> {
    let count = cuda_probe::device_count().map_err(EngineError::Request)?;
    if index >= count {
        return Err(EngineError::Request(format!(
            "--device cuda:{index}: the driver sees {count} GPU(s) (CUDA_VISIBLE_DEVICES={})",
            std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "unset".into())
        )));
    }
    let device = Device::cuda(index);
    // Kernels compile through NVRTC on first use: try one now, so that a missing NVRTC is an
    // error here rather than a panic in the middle of a run.
    let probe = std::panic::catch_unwind(|| {
        use seesaw_model::burn::tensor::Tensor;
        let t = Tensor::<1>::ones([4], &device) * 2.0;
        t.sum().into_scalar::<f32>()
    });
    match probe {
        Ok(v) if (v - 8.0).abs() < 1e-6 => Ok(device),
        Ok(v) => Err(EngineError::Request(format!(
            "--device cuda:{index}: a test kernel gave {v} instead of 8"
        ))),
        Err(panic) => {
            let why = panic_text(&*panic);
            Err(EngineError::Request(format!(
                "--device cuda:{index}: the CUDA backend failed to run a kernel ({why}); \
                 is NVRTC (libnvrtc.so, from the CUDA toolkit) on the library path?"
            )))
        }
    }
}

/// Asks the CUDA driver, loaded by hand, how many GPUs it sees: burn's backend panics when
/// `libcuda.so.1` is missing, so this runs first.
#[cfg(feature = "cuda")]
mod cuda_probe {
    use std::os::raw::c_int;

    type CuInit = unsafe extern "C" fn(flags: u32) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(count: *mut c_int) -> c_int;

    pub fn device_count() -> Result<usize, String> {
        let names = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"];
        // SAFETY: loading the NVIDIA driver library runs its initialisers, which is what
        // the CUDA backend would do next anyway.
        let lib = names
            .iter()
            .find_map(|n| unsafe { libloading::Library::new(*n) }.ok())
            .ok_or_else(|| {
                "--device cuda: no NVIDIA driver (libcuda.so.1 not found); install the driver \
                 or use --device cpu"
                    .to_string()
            })?;
        // SAFETY: the symbols have these C signatures in every CUDA driver API version.
        unsafe {
            let init: libloading::Symbol<CuInit> = lib
                .get(b"cuInit\0")
                .map_err(|e| format!("--device cuda: libcuda has no cuInit: {e}"))?;
            let rc = init(0);
            if rc != 0 {
                return Err(format!(
                    "--device cuda: cuInit failed with CUDA error {rc} (100 means no GPU is \
                     visible: check nvidia-smi and CUDA_VISIBLE_DEVICES)"
                ));
            }
            let get_count: libloading::Symbol<CuDeviceGetCount> = lib
                .get(b"cuDeviceGetCount\0")
                .map_err(|e| format!("--device cuda: libcuda has no cuDeviceGetCount: {e}"))?;
            let mut n: c_int = 0;
            let rc = get_count(&mut n);
            if rc != 0 {
                return Err(format!(
                    "--device cuda: cuDeviceGetCount failed with CUDA error {rc}"
                ));
            }
            Ok(n.max(0) as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_and_print() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            ("wgpu", DeviceSpec::Wgpu(WgpuAdapter::Default)),
            ("wgpu:1", DeviceSpec::Wgpu(WgpuAdapter::Discrete(1))),
            (
                "wgpu:integrated:0",
                DeviceSpec::Wgpu(WgpuAdapter::Integrated(0)),
            ),
            ("wgpu:cpu", DeviceSpec::Wgpu(WgpuAdapter::Cpu)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().expect("parses"), d);
            assert_eq!(d.to_string().parse::<DeviceSpec>().expect("round trip"), d);
        }
        assert_eq!(
            "wgpu:integrated".parse::<DeviceSpec>().expect("parses"),
            DeviceSpec::Wgpu(WgpuAdapter::Integrated(0))
        );
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        for bad in [
            "gpu:x", "cuda:", "cuda:-1", "tpu", "", "wgpu:", "wgpu:gpu", "wgpu:-2",
        ] {
            let err = bad.parse::<DeviceSpec>().expect_err(bad).to_string();
            assert!(err.contains("expected cpu, cuda or cuda:N"), "{err}");
        }
        assert!(DeviceSpec::Cpu.open().is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        let err = DeviceSpec::Cuda(0).open().expect_err("no cuda").to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_without_the_feature_says_how_to_build_it() {
        let err = DeviceSpec::Wgpu(WgpuAdapter::Cpu)
            .open()
            .expect_err("no wgpu")
            .to_string();
        assert!(
            err.contains("--features wgpu") && err.contains("wgpu:cpu"),
            "{err}"
        );
    }
}
