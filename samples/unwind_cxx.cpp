/*
 * unwind_cxx.cpp: known call paths for unwinding without frame pointers (C++, exceptions).
 *
 * Built by the tests with `g++ -O2 -g -fomit-frame-pointer`. The allocations go through
 * operator new (libstdc++, which ends in malloc) from frames that have exception landing
 * pads, and one is made inside a catch handler after an exception unwound through two frames:
 *   34567 B: malloc <- operator new <- Inventory::grow <- Inventory::add <- fill <- main
 *   45678 B: malloc <- operator new <- recover <- main (in recover's catch handler, after
 *            thrower threw through middle)
 * Neither block is freed. Usage: unwind_cxx   Prints "items N recovered N".
 */
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#define NOINLINE __attribute__((noinline))

static char *volatile kept[2];

class Inventory {
  public:
    NOINLINE void add(size_t bytes) {
        std::string label = "item " + std::to_string(bytes); // destroyed on unwinding
        grow(bytes);
        count_ += label.size();
    }
    size_t count() const { return count_; }

  private:
    NOINLINE void grow(size_t bytes) {
        char *block = new char[bytes];
        block[0] = static_cast<char>(bytes);
        kept[0] = block;
        count_++;
    }
    size_t count_ = 0;
};

NOINLINE void fill(Inventory &inventory) {
    std::vector<int> guard(16, 1); // a destructor to run if add throws
    inventory.add(34567);
    if (guard[3] != 1)
        throw std::logic_error("guard changed");
}

NOINLINE int thrower(int depth) {
    if (depth > 0)
        throw std::runtime_error("deep failure");
    return depth;
}

NOINLINE int middle(int depth) {
    std::string context(64, 'x');
    int result = thrower(depth);
    return result + static_cast<int>(context.size());
}

NOINLINE size_t recover(int depth) {
    try {
        return static_cast<size_t>(middle(depth));
    } catch (const std::runtime_error &) {
        char *block = new char[45678];
        block[0] = 1;
        kept[1] = block;
        return 1;
    }
}

int main() {
    Inventory inventory;
    fill(inventory);
    size_t recovered = recover(3);
    std::printf("items %zu recovered %zu\n", inventory.count(), recovered);
    return 0;
}
