GREETING = "Hello from memento!"


def home() -> str:
    return (
        f"<h1>{GREETING}</h1>"
        "<p>Edit <code>examples/hello/hello/views.py</code>, save, and reload this page.</p>"
    )
