"""The web console at `/ui/`: the Read, Models and Audit pages, served by the server itself.

Plain HTML, CSS and JavaScript written for this project (`static/`, no build step, nothing fetched from
elsewhere), calling the same HTTP API as any client with the credential the user types in (held in
the page's memory only). `views` serves the files under a strict Content-Security-Policy; `pages`
renders a document's pages as pictures for the Read page to draw the boxes on.
"""
