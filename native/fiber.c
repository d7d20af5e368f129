/*
 * Fibers: user-level contexts with their own stacks and our own context
 * switch.  This is the "user-level thread" half of scheduler activations
 * (seed 002): switching between fibers never enters the kernel, which is
 * what makes user-level threads fast and what the kernel cannot see when
 * one of them blocks.
 *
 * The switch is x86-64 assembly following the System V ABI: it saves the
 * callee-saved registers (rbx, rbp, r12-r15), the MXCSR and x87 control
 * words (callee-saved control state), and the stack pointer.  Caller-saved
 * registers are already spilled by the compiler around the call.  Other
 * architectures build, but lab_fiber_init() reports -ENOTSUP.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#if defined(__x86_64__)

/*
 * Saved frame, ascending from fiber->sp:
 *   [0] MXCSR (low 32 bits) | x87 control word (bits 32..47)
 *   [1] r15  [2] r14  [3] r13  [4] r12  [5] rbx  [6] rbp
 *   [7] return address
 */
__asm__(".text\n"
	".globl lab_fiber_switch\n"
	".type lab_fiber_switch,@function\n"
	"lab_fiber_switch:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	subq $8, %rsp\n"
	"	stmxcsr (%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	movq %rsp, (%rdi)\n" /* from->sp */
	"	movq (%rsi), %rsp\n" /* to->sp */
	"	ldmxcsr (%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size lab_fiber_switch, .-lab_fiber_switch\n"
	/* First switch into a new fiber lands here: r12 = arg, r13 = entry.
	 * The stack is 16-byte aligned, as a call site requires. */
	".type lab_fiber_trampoline,@function\n"
	"lab_fiber_trampoline:\n"
	"	movq %r12, %rdi\n"
	"	callq *%r13\n"
	"	ud2\n" /* a fiber's entry must never return */
	".size lab_fiber_trampoline, .-lab_fiber_trampoline\n");

extern void lab_fiber_trampoline(void);

int lab_fiber_supported(void)
{
	return 1;
}

int lab_fiber_init(struct lab_fiber *fiber, size_t stack_size,
		   void (*entry)(void *), void *arg)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t *frame;
	uintptr_t top;
	void *stack;

	memset(fiber, 0, sizeof(*fiber));
	stack_size = (stack_size + page - 1) & ~(page - 1);
	if (stack_size < 4 * page)
		return -EINVAL;
	stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return -errno;
	/* guard page: a fiber overflowing its stack faults instead of
	 * silently corrupting its neighbour */
	if (mprotect(stack, page, PROT_NONE) < 0) {
		int err = -errno;

		munmap(stack, stack_size);
		return err;
	}

	/* After the final `ret` into the trampoline, rsp = top - 16: aligned. */
	top = ((uintptr_t)stack + stack_size) & ~(uintptr_t)15;
	frame = (uint64_t *)(top - 16 - 8 * sizeof(uint64_t));
	frame[0] = 0x1f80ull | (0x037full << 32); /* default MXCSR, x87 CW */
	frame[1] = 0;				  /* r15 */
	frame[2] = 0;				  /* r14 */
	frame[3] = (uint64_t)(uintptr_t)entry;	  /* r13 */
	frame[4] = (uint64_t)(uintptr_t)arg;	  /* r12 */
	frame[5] = 0;				  /* rbx */
	frame[6] = 0;				  /* rbp */
	frame[7] = (uint64_t)(uintptr_t)lab_fiber_trampoline;

	fiber->sp = frame;
	fiber->stack = stack;
	fiber->stack_size = stack_size;
	return 0;
}

#else /* !__x86_64__ */

int lab_fiber_supported(void)
{
	return 0;
}

int lab_fiber_init(struct lab_fiber *fiber, size_t stack_size,
		   void (*entry)(void *), void *arg)
{
	(void)stack_size;
	(void)entry;
	(void)arg;
	memset(fiber, 0, sizeof(*fiber));
	return -ENOTSUP;
}

void lab_fiber_switch(struct lab_fiber *from, struct lab_fiber *to)
{
	(void)from;
	(void)to;
	abort(); /* unreachable: no fiber can be initialised here */
}

#endif

void lab_fiber_deinit(struct lab_fiber *fiber)
{
	if (fiber->stack)
		munmap(fiber->stack, fiber->stack_size);
	memset(fiber, 0, sizeof(*fiber));
}
