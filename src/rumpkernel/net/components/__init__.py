"""The network drivers' components (each module is one; the kernel finds them by listing this
package, see kern/component.py)."""
