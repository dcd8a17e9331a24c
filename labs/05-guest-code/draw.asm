; Lab 05: draws on two monitors, one frame per loop, yielding to the host after each.
; left  is mapped at 0x40000000 (1024x768x32, stride 4096: one page per scanline)
; right is mapped at 0x48000000 (800x600x32,  stride 3200)
        xor r15, r15                ; frame number
frame:
        ; left: an 8-line orange bar moving down 8 lines per frame
        mov rax, r15
        imul rax, rax, 8
        xor edx, edx
        mov ecx, 760
        div rcx                     ; rdx = first line of the bar
        imul rdx, rdx, 4096
        mov rdi, 0x40000000
        add rdi, rdx
        mov ecx, 8192               ; 8 lines of 1024 pixels
        mov eax, 0x00ff8800
        rep stosd
        ; right: a 64x64 blue box marching right 16 pixels per frame, at line 200
        mov rax, r15
        imul rax, rax, 16
        xor edx, edx
        mov ecx, 736
        div rcx                     ; rdx = x
        mov rbx, 0x4809c400         ; 0x48000000 + 200 * 3200
        lea rbx, [rbx + rdx*4]
        mov r8d, 64
row:
        mov rdi, rbx
        mov ecx, 64
        mov eax, 0x000088ff
        rep stosd
        add rbx, 3200
        dec r8d
        jnz row
        xor eax, eax                ; hypercall 0: yield, the frame is done
        vmcall
        inc r15
        jmp frame
