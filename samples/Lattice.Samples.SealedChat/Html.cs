using System.Text.Encodings.Web;

namespace Lattice.Samples.SealedChat;

/// <summary>The app's pages: plain HTML, every value from outside encoded.</summary>
internal static class Html
{
    public static string Encode(string? value) => HtmlEncoder.Default.Encode(value ?? "");

    public static IResult Page(string title, string body, int statusCode = StatusCodes.Status200OK) => TypedResults.Content($"""
        <!doctype html>
        <html lang="en">
        <head><meta charset="utf-8"><title>{Encode(title)} · Sealed Chat</title>
        <style>body{"{"}font:16px system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem{"}"} textarea{"{"}width:100%{"}"} #answer{"{"}white-space:pre-wrap;border:1px solid #ccc;padding:1rem;min-height:3rem{"}"}</style>
        </head>
        <body>
        {body}
        </body>
        </html>
        """, "text/html; charset=utf-8", statusCode: statusCode);
}
