; Lab 05, part 3: a 1024x256 band drawn pixel by pixel (one store per pixel, as real guest code
; draws), moving down 32 lines a frame on the left monitor (mapped at 0x40000000, stride 4096).
; The inner loop is what the block translator compiles to one IL loop: mov, add, mov [..], inc,
; cmp, jb. Every frame ends with vmcall, RAX = 0 (yield) so the lab can pull dirty rectangles.
        xor r15, r15                ; frame number
frame:
        mov rax, r15
        imul rax, rax, 32           ; 32 lines a frame
        xor edx, edx
        mov ecx, 512
        div rcx                     ; rdx = top line (0..511)
        imul rdi, rdx, 4096
        mov rax, 0x40000000
        add rdi, rax
        mov r9d, 256                ; lines in the band
line:
        imul r10d, r9d, 0x200       ; green from the line
        add r10d, r15d              ; blue shifts with the frame
        xor ecx, ecx                ; x
pixel:
        mov eax, ecx
        add eax, r10d
        mov [rdi + rcx*4], eax
        inc ecx
        cmp ecx, 1024
        jb pixel
        add rdi, 4096
        dec r9d
        jnz line
        xor eax, eax                ; hypercall 0: yield, the frame is done
        vmcall
        inc r15
        jmp frame
