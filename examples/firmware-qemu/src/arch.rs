//! What differs between Arm Cortex-M and RISC-V: the entry point, the fault handler,
//! semihosting, the stack pointer and the linker symbols.

#[cfg(target_arch = "arm")]
mod imp {
    use cortex_m_rt::{entry, exception, ExceptionFrame};

    extern "C" {
        static __ebss: u32;
        static _stack_start: u32;
        static _kiln_model_partition: u8;
        static _kiln_model_partition_len: u8;
    }

    #[entry]
    fn main() -> ! {
        crate::app()
    }

    /// A fault must end the run with a failure, not hang QEMU until its timeout.
    #[exception]
    unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
        write(b"error: hard fault\n");
        exit(false)
    }

    pub fn write(bytes: &[u8]) {
        if let Ok(mut stdout) = cortex_m_semihosting::hio::hstdout() {
            let _ = stdout.write_all(bytes);
        }
    }

    pub fn exit(success: bool) -> ! {
        let status = if success {
            cortex_m_semihosting::debug::EXIT_SUCCESS
        } else {
            cortex_m_semihosting::debug::EXIT_FAILURE
        };
        cortex_m_semihosting::debug::exit(status);
        loop {
            cortex_m::asm::wfi();
        }
    }

    pub fn stack_pointer() -> usize {
        cortex_m::register::msp::read() as usize
    }

    /// The free RAM the stack can grow into: from the end of .bss to the initial stack pointer.
    pub fn stack_region() -> (usize, usize) {
        (
            core::ptr::addr_of!(__ebss) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    }

    pub fn partition_bounds() -> (usize, usize) {
        (
            core::ptr::addr_of!(_kiln_model_partition) as usize,
            core::ptr::addr_of!(_kiln_model_partition_len) as usize,
        )
    }
}

#[cfg(target_arch = "riscv32")]
mod imp {
    extern "C" {
        static __ebss: u32;
        static _stack_start: u32;
        static _kiln_model_partition: u8;
        static _kiln_model_partition_len: u8;
    }

    #[riscv_rt::entry]
    fn main() -> ! {
        crate::app()
    }

    /// A trap must end the run with a failure, not spin until QEMU's timeout.
    #[export_name = "ExceptionHandler"]
    fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
        write(b"error: exception trap\n");
        exit(false)
    }

    pub fn write(bytes: &[u8]) {
        use semihosting::io::Write as _;
        if let Ok(mut stdout) = semihosting::io::stdout() {
            let _ = stdout.write_all(bytes);
        }
    }

    pub fn exit(success: bool) -> ! {
        semihosting::process::exit(if success { 0 } else { 1 })
    }

    pub fn stack_pointer() -> usize {
        let sp: usize;
        unsafe { core::arch::asm!("mv {}, sp", out(reg) sp) };
        sp
    }

    /// The free RAM the stack can grow into: from the end of .bss to the initial stack pointer.
    pub fn stack_region() -> (usize, usize) {
        (
            core::ptr::addr_of!(__ebss) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    }

    pub fn partition_bounds() -> (usize, usize) {
        (
            core::ptr::addr_of!(_kiln_model_partition) as usize,
            core::ptr::addr_of!(_kiln_model_partition_len) as usize,
        )
    }
}

pub use imp::{exit, stack_pointer, stack_region, write};

/// The flash partition the model blob was written to, as the linker script places it.
#[cfg_attr(not(feature = "blob-partition"), allow(dead_code))]
pub fn model_partition() -> &'static [u8] {
    let (start, len) = imp::partition_bounds();
    // Safety: memory.x reserves this flash range for the model; nothing writes it at run time.
    unsafe { core::slice::from_raw_parts(start as *const u8, len) }
}
