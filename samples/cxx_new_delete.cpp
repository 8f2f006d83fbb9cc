/*
 * cxx_new_delete.cpp: C++ operator new/delete end in malloc/free.
 *
 * libstdc++'s operator new calls malloc and operator delete calls free, so a malloc/free
 * tracer sees C++ allocations with the caller of `new` on the stack.
 *
 * What it leaks: 5 `new Widget` (64 bytes each) from make_widget <- main; 300 other
 * new/delete pairs (scalar and array) are released. A correct recording holds at least
 * 300 + 5 malloc calls of which 300 are freed, and the 5 leaked blocks come from a stack
 * through `operator new` (make_widget itself, the direct caller of operator new, is missing
 * from frame-pointer stacks because libstdc++ is built without frame pointers; the stack
 * continues at main).
 *
 * Built with `g++ -O1 -g -fno-omit-frame-pointer`.
 */
#include <cstdio>

struct Widget {
    long values[8];
};

static Widget *volatile sink;
static char *volatile array_sink;

__attribute__((noinline)) Widget *make_widget() { return new Widget(); }

int main() {
    for (int i = 0; i < 200; i++) {
        sink = make_widget();
        delete sink;
    }
    for (int i = 0; i < 100; i++) {
        array_sink = new char[300];
        delete[] array_sink;
    }
    for (int i = 0; i < 5; i++) sink = make_widget();
    return 0;
}
