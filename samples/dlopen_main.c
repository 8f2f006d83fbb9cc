/*
 * dlopen_main.c: loads a library with dlopen after recording has started, then calls it.
 *
 * Usage: dlopen_main PATH_TO_PLUGIN_SO. Waits 400 ms, dlopens the plugin (dlopen_plugin.c),
 * calls plugin_leak(), waits 200 ms and exits.
 *
 * What it leaks: the plugin's 10 x 123-byte mallocs (and whatever dlopen keeps for the loaded
 * library). A correct report names plugin_leak in the plugin as the leaking function.
 *
 * Built with `gcc -O1 -g -fno-omit-frame-pointer -ldl`.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct timespec wait = {0, 400 * 1000000L};
    nanosleep(&wait, NULL);
    void *plugin = dlopen(argv[1], RTLD_NOW);
    if (!plugin) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    void (*leak)(void) = (void (*)(void))dlsym(plugin, "plugin_leak");
    if (!leak) return 1;
    leak();
    wait.tv_nsec = 200 * 1000000L;
    nanosleep(&wait, NULL);
    return 0;
}
