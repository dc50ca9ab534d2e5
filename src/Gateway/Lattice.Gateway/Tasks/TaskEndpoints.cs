namespace Lattice.Gateway.Tasks;

/// <summary><c>POST /v1/tasks/{task}</c>: the generic surface every alias wraps.</summary>
public static class TaskEndpoints
{
    public static IEndpointRouteBuilder MapTasks(this IEndpointRouteBuilder routes, string prefix = "/v1")
    {
        routes.MapPost(prefix + "/tasks/{task}", (HttpContext context, string task, TaskDispatcher dispatcher) =>
            dispatcher.DispatchAsync(context, task));
        return routes;
    }

    public static IServiceCollection AddTasks(this IServiceCollection services)
    {
        services.AddSingleton<TaskDispatcher>();
        services.AddSingleton<RequestBodies>();
        services.AddSingleton<Dispatch.Dispatcher>();
        services.AddSingleton<Routing.Router>();
        return services;
    }
}
