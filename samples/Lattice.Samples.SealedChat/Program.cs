using Lattice.Samples.SealedChat;

// Sealed Chat: sign in with Lattice, pick one of your personal runtimes, and chat with it so that the gateway
// relays only ciphertext. See samples/README.md for how to run it against `lattice up`.
var builder = WebApplication.CreateBuilder(args);
builder.Services.AddSealedChat(builder.Configuration);

var app = builder.Build();
app.UseAntiforgery();
app.MapSignIn();
app.MapRuntimeChoice();
app.MapChat();
app.MapFailureScreens();
app.Lifetime.ApplicationStarted.Register(() => Console.WriteLine($"sealed chat listening on {string.Join(' ', app.Urls)}"));
app.Run();
